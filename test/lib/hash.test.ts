// Tests for lib/hash.ts: FNV-1a 64 and the Sheepdog hashes built on it, against the vectors of
// wire-protocol.md §9.1, §10.4 and §12.9.
import t from 'tap'
import { fnv1a64, fnv1a64U64, sdHash, sdHashAttrId, sdHashInto, sdHashNext, sdHashNextInto, sdHashOid, sdHashOidInto, sdHashVdi } from '../../lib/hash.js'

const enc = new TextEncoder()

// Reference FNV-1a 64 in BigInt, to cross-check the 32-bit-halves implementation.
function refFnv(bytes: Uint8Array, h = 0xcbf29ce484222325n): bigint {
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn
  return h
}

function le64(v: bigint): Uint8Array {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, v, true)
  return b
}

t.test('FNV-1a 64 standard vectors', async (t) => {
  t.equal(fnv1a64(new Uint8Array(0)), 0xcbf29ce484222325n)
  t.equal(fnv1a64(enc.encode('a')), 0xaf63dc4c8601ec8cn)
  t.equal(fnv1a64(enc.encode('foobar')), 0x85944171f73967e8n)
})

t.test('matches a BigInt reference on pseudo-random input and bases', async (t) => {
  let seed = 12345
  const rnd = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed >>> 24
  }
  for (let n = 0; n < 200; n++) {
    const bytes = new Uint8Array(n % 37)
    for (let i = 0; i < bytes.length; i++) bytes[i] = rnd()
    const basis = (BigInt(rnd()) << 56n) | (BigInt(rnd()) << 24n) | BigInt(rnd())
    t.equal(fnv1a64(bytes, basis), refFnv(bytes, basis))
    const v = refFnv(bytes)
    t.equal(fnv1a64U64(v, basis), refFnv(le64(v), basis))
  }
})

t.test('sd_hash_vdi vectors (§9.1)', async (t) => {
  const vectors: [string, number][] = [
    ['test', 0x7c2b25],
    ['test1', 0xfd32fc],
    ['test2', 0xfd3815],
    ['test3', 0xfd3662],
    ['clone1', 0xc8f989],
    ['01909709', 0x000000],
    ['05421217', 0xffffff],
    ['00471718', 0xfffff9],
    ['sd', 0x7927f2],
  ]
  for (const [name, hash] of vectors) {
    t.equal(sdHashVdi(name), hash, name)
    t.equal(sdHashVdi(enc.encode(name)), hash, `${name} as bytes`)
  }
})

t.test('node hash and vnodes of 127.0.0.1:7000 (§10.4)', async (t) => {
  const key = new Uint8Array(18)
  key.set([127, 0, 0, 1], 12)
  key[16] = 7000 & 0xff
  key[17] = 7000 >> 8
  const h0 = sdHash(key)
  t.equal(h0, 0x9cb3d6dd0a4c0f9fn)
  const h1 = sdHashNext(h0)
  const h2 = sdHashNext(h1)
  const h3 = sdHashNext(h2)
  t.same([h1, h2, h3], [0x3af2cba6e538cdf3n, 0xfd38432fd111924bn, 0x2ad2bef8f506e35dn])
  t.equal(sdHash(key), fnv1a64U64(fnv1a64(key), fnv1a64(key)), 'sd_hash = FNV1A_U64(h, h)')

  const out = new Uint32Array(2)
  sdHashInto(key, out)
  t.same([out[0], out[1]], [0x9cb3d6dd, 0x0a4c0f9f])
  sdHashNextInto(out[0]!, out[1]!, out)
  t.same([out[0], out[1]], [0x3af2cba6, 0xe538cdf3])
})

t.test('sd_hash_oid vectors (§10.4)', async (t) => {
  t.equal(sdHashOid(0x807c2b2500000000n), 0x8b4b18c243befa1an)
  t.equal(sdHashOid(0x007c2b2500000001n), 0xed0c37b076d586acn)
  t.equal(sdHashOid(0x007c2b2500000001n), sdHash(le64(0x007c2b2500000001n)), '= sd_hash of LE oid')
  const out = new Uint32Array(2)
  sdHashOidInto(0x807c2b25, 0, out)
  t.same([out[0], out[1]], [0x8b4b18c2, 0x43befa1a])
})

t.test('attribute id (§12.9)', async (t) => {
  const id = sdHashAttrId('test', '', 0, 'lock')
  t.equal(id, 0xeacb4fc2)
  const raw = new Uint8Array(256)
  raw.set(enc.encode('test'))
  t.equal(sdHashAttrId(raw, new Uint8Array(256), 0, 'lock'), id, 'raw 256-byte fields')
  t.not(sdHashAttrId('test', '', 1, 'lock'), id, 'snap_id is hashed')
})
