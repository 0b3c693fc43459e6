// The Pkarr JS client (npm pkarr 1.3.0) against dhtd, for
// cmd/dhtd/pkarr_interop_test.go. Prints one JSON object on stdout.
//
//   node interop.mjs relay RELAY_URL SEED_HEX
//     signs a packet, publishes it with Pkarr.relayPut through the relay
//     and reads it back with Pkarr.relayGet.
//   node interop.mjs dht HOST:PORT SEED_HEX STATE_DIR
//     signs a packet and puts it with the client's own DHT code, whose only
//     bootstrap node is HOST:PORT (routing table kept in STATE_DIR).
import { Pkarr, SignedPacket, z32 } from 'pkarr'
import { DHT } from 'pkarr/lib/dht.js'

const [mode, where, seedHex, stateDir] = process.argv.slice(2)
const keyPair = Pkarr.generateKeyPair(Buffer.from(seedHex, 'hex'))
const packet = {
  type: 'response',
  id: 0,
  flags: 1 << 10, // authoritative answer
  answers: [
    { type: 'A', name: '@', ttl: 300, data: '192.0.2.7' },
    { type: 'TXT', name: '_interop', ttl: 60, data: 'from the pkarr js client via ' + mode }
  ]
}
const signed = SignedPacket.fromPacket(keyPair, packet)
const out = {
  public_key: Buffer.from(keyPair.publicKey).toString('hex'),
  z32: z32.encode(keyPair.publicKey),
  seq: signed.timestamp(),
  sig: Buffer.from(signed.signature()).toString('hex'),
  packet: Buffer.from(signed.bep44Args().v).toString('hex')
}

async function main () {
  if (mode === 'relay') {
    const relay = where.replace(/\/+$/, '') + '/pkarr'
    const put = await Pkarr.relayPut(relay, signed)
    out.put_status = put.status
    out.put_cors = put.headers.get('access-control-allow-origin')
    const got = await Pkarr.relayGet(relay, keyPair.publicKey) // verifies the signature
    out.get_seq = got.timestamp()
    out.get_same_bytes = Buffer.compare(Buffer.from(got.bytes()), Buffer.from(signed.bytes())) === 0
    out.get_answers = got.packet().answers.map(a => ({ name: a.name, type: a.type, data: Buffer.isBuffer(a.data) || Array.isArray(a.data) ? [].concat(a.data).map(String).join('') : a.data }))
  } else if (mode === 'dht') {
    const [host, port] = where.split(':')
    const dht = new DHT({ bootstrap: [{ host, port: Number(port) }], storageLocation: stateDir })
    try {
      const res = await dht.put(signed.bep44Args())
      out.put_to = res.nodes.map(n => (n.host || n.address) + ':' + n.port)
      out.table = dht._dht.toJSON().nodes.map(n => n.host + ':' + n.port)
    } finally {
      await dht.destroy()
    }
  } else {
    throw new Error('mode: want relay or dht, got ' + mode)
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().then(() => process.exit(0), err => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n')
  process.exit(1)
})
