// webtorrent's DHT client (npm bittorrent-dht 11) against dhtd, for
// node/interop_clients_test.go. Prints one JSON object on stdout.
//
//   node bittorrent-dht.mjs HOST:PORT JOB_JSON
//
// Two clients on 127.0.0.3 bootstrap from the dhtd node at HOST:PORT only.
// The first reads what dhtd stored (JOB_JSON's "peers_of" infohash and
// "get" items, a salted one with its "salt"); then it writes: announces
// "announce" with port "port", puts the immutable string "immutable", and
// puts the mutable string "mutable" under the ed25519 key of "seed" with
// salt "salt" at seq 1, then "mutable2" at seq 2 with cas 1. The second
// client, which wrote nothing, reads each item back from the network
// (cache: false), and the Go test reads them from dhtd once both are gone.
import DHT from 'bittorrent-dht'
import crypto from 'node:crypto'

const [boot, jobJSON] = process.argv.slice(2)
const job = JSON.parse(jobJSON)

// Ed25519 keys in node:crypto: raw 32-byte keys wrapped in their DER
// envelopes (RFC 8410).
const spkiPrefix = Buffer.from('302a300506032b6570032100', 'hex')
const pkcs8Prefix = Buffer.from('302e020100300506032b657004220420', 'hex')
function verify (sig, msg, pub) {
  const key = crypto.createPublicKey({ key: Buffer.concat([spkiPrefix, Buffer.from(pub)]), format: 'der', type: 'spki' })
  return crypto.verify(null, Buffer.from(msg), key, Buffer.from(sig))
}
const priv = crypto.createPrivateKey({ key: Buffer.concat([pkcs8Prefix, Buffer.from(job.seed, 'hex')]), format: 'der', type: 'pkcs8' })
const pub = crypto.createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(spkiPrefix.length)
const sign = (buf) => crypto.sign(null, buf, priv)

function start () {
  return new Promise((resolve, reject) => {
    const d = new DHT({ bootstrap: [boot], verify, host: false })
    d.on('error', reject)
    d.listen(0, '127.0.0.3')
    d.once('ready', () => resolve(d))
  })
}
const call = (f) => new Promise((resolve, reject) => f((err, ...r) => err ? reject(err) : resolve(r)))
const hex = (b) => Buffer.from(b).toString('hex')

async function lookupPeers (d, ih) {
  const peers = new Set()
  const onPeer = (peer, infoHash) => { if (hex(infoHash) === ih) peers.add(peer.host + ':' + peer.port) }
  d.on('peer', onPeer)
  await call((cb) => d.lookup(Buffer.from(ih, 'hex'), cb))
  d.removeListener('peer', onPeer)
  return [...peers].sort()
}

async function get (d, target, salt) {
  // cache: false asks the network even where this client stored the item.
  const opts = { cache: false }
  if (salt) opts.salt = Buffer.from(salt)
  const [r] = await call((cb) => d.get(Buffer.from(target, 'hex'), opts, cb))
  if (!r) return { target, found: false }
  return { target, found: true, v: hex(r.v), seq: r.seq ?? null }
}

const a = await start()
const b = await start()
const out = { table: a.nodes.count(), public_key: hex(pub) }
out.peers = await lookupPeers(a, job.peers_of)
out.got = []
for (const g of job.get) out.got.push(await get(a, g.target, g.salt))

await call((cb) => a.announce(Buffer.from(job.announce, 'hex'), job.port, cb))
const [imm] = await call((cb) => a.put({ v: Buffer.from(job.immutable) }, cb))
out.immutable_target = hex(imm)
const salt = Buffer.from(job.salt)
const [mut] = await call((cb) => a.put({ k: pub, seq: 1, v: Buffer.from(job.mutable), salt, sign }, cb))
await call((cb) => a.put({ k: pub, seq: 2, cas: 1, v: Buffer.from(job.mutable2), salt, sign }, cb))
out.mutable_target = hex(mut)

out.read_back = {
  peers: await lookupPeers(b, job.announce),
  immutable: await get(b, out.immutable_target),
  mutable: await get(b, out.mutable_target, job.salt)
}
a.destroy()
b.destroy()
process.stdout.write(JSON.stringify(out) + '\n')
