package main

// The manual page, dhtd(1), written as roff straight from the CLI
// definition. urfave/cli can render one too, through a Markdown template
// and a Markdown-to-roff converter, but that converter's package tables
// are built at every start of every command; `make build` leaves it out
// (the urfave_cli_no_docs build tag) and this small writer takes its
// place.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// manPage returns app's manual page in roff (man(7) macros), in section
// section: NAME, SYNOPSIS, DESCRIPTION, GLOBAL OPTIONS, then one .SH per
// command and one .SS per subcommand, each with its usage, description
// and flags.
func manPage(app *cli.App, section int) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".nh\n.TH %s %d\n", roffText(app.Name), section)
	b.WriteString(".SH NAME\n")
	b.WriteString(roffText(app.Name))
	if app.Usage != "" {
		b.WriteString(" \\- " + roffText(app.Usage))
	}
	b.WriteString("\n.SH SYNOPSIS\n")
	usage := app.UsageText
	if usage == "" {
		usage = app.Name + " [GLOBAL OPTIONS] command [COMMAND OPTIONS] [ARGUMENTS...]"
	}
	fmt.Fprintf(&b, ".EX\n%s\n.EE\n", roffLines(usage))
	if app.Description != "" {
		fmt.Fprintf(&b, ".SH DESCRIPTION\n%s\n", roffParagraphs(app.Description))
	}
	if flags := app.VisibleFlags(); len(flags) > 0 {
		b.WriteString(".SH GLOBAL OPTIONS\n")
		writeManFlags(&b, flags)
	}
	if len(app.VisibleCommands()) > 0 {
		b.WriteString(".SH COMMANDS\n")
		writeManCommands(&b, app.Name, app.VisibleCommands(), 0)
	}
	return b.String()
}

// writeManCommands writes cmds (and their subcommands, one level deeper)
// under parent, the command path that runs them.
func writeManCommands(b *strings.Builder, parent string, cmds []*cli.Command, level int) {
	for _, c := range cmds {
		head := ".SH"
		if level > 0 {
			head = ".SS"
		}
		fmt.Fprintf(b, "%s %s\n", head, roffText(strings.Join(c.Names(), ", ")))
		if c.Usage != "" {
			fmt.Fprintf(b, "%s\n", roffText(c.Usage))
		}
		path := parent + " " + c.Name
		synopsis := c.UsageText
		if synopsis == "" && c.ArgsUsage != "" {
			synopsis = path + " [OPTIONS] " + c.ArgsUsage
		}
		if synopsis != "" {
			fmt.Fprintf(b, ".PP\n.EX\n%s\n.EE\n", roffLines(synopsis))
		}
		if c.Description != "" {
			fmt.Fprintf(b, ".PP\n%s\n", roffParagraphs(c.Description))
		}
		writeManFlags(b, c.VisibleFlags())
		if subs := c.VisibleCommands(); len(subs) > 0 {
			writeManCommands(b, path, subs, level+1)
		}
	}
}

// writeManFlags writes one tagged paragraph per flag, sorted by name:
// its names (and =VALUE when it takes one), its usage and its default.
func writeManFlags(b *strings.Builder, flags []cli.Flag) {
	type entry struct{ key, tag, text string }
	var entries []entry
	for _, f := range flags {
		names := f.Names()
		if len(names) == 0 {
			continue
		}
		var tag []string
		for _, n := range names {
			dash := "--"
			if len(n) == 1 {
				dash = "-"
			}
			tag = append(tag, `\fB`+roffText(dash+n)+`\fR`)
		}
		t := strings.Join(tag, ", ")
		text := ""
		if df, ok := f.(cli.DocGenerationFlag); ok {
			if df.TakesValue() {
				t += `=\fIVALUE\fR`
			}
			text = df.GetUsage()
			if df.TakesValue() {
				def := df.GetDefaultText()
				if def == "" {
					def = df.GetValue()
				}
				if def != "" && def != `""` {
					text += " (default: " + def + ")"
				}
			}
			if env := df.GetEnvVars(); len(env) > 0 {
				text += " [$" + strings.Join(env, ", $") + "]"
			}
		}
		entries = append(entries, entry{key: names[0], tag: t, text: text})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	for _, e := range entries {
		fmt.Fprintf(b, ".TP\n%s\n%s\n", e.tag, roffText(e.text))
	}
}

// roffText escapes s for one line of roff text: backslashes become \e,
// hyphens \- (so that options can be searched for and copied), and a
// line that would start with a control character (. or ') is protected
// with \&. Newlines become spaces.
func roffText(s string) string {
	s = strings.ReplaceAll(s, "\\", `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	s = strings.ReplaceAll(s, "\n", " ")
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// roffLines escapes each line of s as roffText, keeping the line breaks
// (for .EX blocks).
func roffLines(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = roffText(l)
	}
	return strings.Join(lines, "\n")
}

// roffParagraphs escapes s, keeping its line breaks as line breaks
// (.br) and its blank lines as paragraph breaks (.PP).
func roffParagraphs(s string) string {
	var out []string
	for _, para := range strings.Split(strings.Trim(s, "\n"), "\n\n") {
		lines := strings.Split(strings.Trim(para, "\n"), "\n")
		for i, l := range lines {
			lines[i] = roffText(l)
		}
		out = append(out, strings.Join(lines, "\n.br\n"))
	}
	return strings.Join(out, "\n.PP\n")
}
