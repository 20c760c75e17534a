// Tests for lib/ec: GF(2^8) arithmetic, the encoding matrix, the strip layout, the WASM kernel
// against the TypeScript one, and decoding from every combination of lost strips. The golden
// matrix rows and parity strips below were printed by the original's own lib/fec.c (built
// without and with isa-l's base C code; both printed the same bytes) for the object whose
// byte i is (i·7 + (i>>8)·13 + 1) mod 256.
import crypto from 'node:crypto'
import t from 'tap'
import { ErasureCoder, ecCopyPolicy, ecPolicyOf, erasureCoder, isValidEcPolicy, SD_EC_DATA_STRIPE_SIZE } from '../../lib/ec/codec.js'
import { gfInv, gfMul, gfPow } from '../../lib/ec/gf256.js'
import { tsKernel } from '../../lib/ec/kernel.js'
import { kernelModuleBytes, wasmKernel } from '../../lib/ec/kernel-wasm.js'
import { encodingMatrix, gfMatrix, matrixInvert, matrixMultiply, identityMatrix } from '../../lib/ec/matrix.js'

interface Golden {
  policy: string
  objectBytes: number
  /** Parity rows d..d+p-1 of the encoding matrix, hex. */
  rows: readonly string[]
  /** Parity strips d..d+p-1 of the golden object, hex. */
  parity: readonly string[]
}

const GOLDEN: readonly Golden[] = [
  {
    policy: '2:1',
    objectBytes: 1024,
    rows: ['0302'],
    parity: [
      '1f32297c730e0d28c75a61643b3645506f9f84aca3fefdb897aa5154ebe6b5a0ffd2c9010e2e2d08673a0104dbd665704f22394c43838098b78af1f48b865540dff2e9bcb3cecde81a1a21247b7605102fc2d96c633e3d78576a8c89aba6f5e0bf92895c53eeedc8a7fac1c4060b25300f62790c03dedd58774a31344b46889d9fb2a9fcf38e8da847dae1e4bbb6c5d0ef1f042c237e7d38172ad1d46b6635207f5249818eaead88e7ba81845b56e5f0cfa2b9ccc3030018370a71740b06d5c05f72693c334e4d689a9aa1a4fbf68590af4259ece3bebdf8d7ea0c092b2675603f1209dcd36e6d48277a4144868ba5b08fe2f98c835e5dd8f7cab1b4cbc6081d7d38172ad1d46b6635207f5249818eaead88e7ba81845b56e5f0cfa2b9ccc3030018370a71740b06d5c05f72693c334e4d689a9aa1a4fbf68590af4259ece3bebdf8d7ea0c092b2675603f1209dcd36e6d48277a4144868ba5b08fe2f98c835e5dd8f7cab1b4cbc6081d1f32297c730e0d28c75a61643b3645506f9f84aca3fefdb897aa5154ebe6b5a0ffd2c9010e2e2d08673a0104dbd665704f22394c43838098b78af1f48b865540dff2e9bcb3cecde81a1a21247b7605102fc2d96c633e3d78576a8c89aba6f5e0bf92895c53eeedc8a7fac1c4060b25300f62790c03dedd58774a31344b46889d9fb2a9fcf38e8da847dae1e4bbb6c5d0ef1f042c237e',
    ],
  },
  {
    policy: '4:2',
    objectBytes: 1024,
    rows: ['7740380e', 'c7a70d6c'],
    parity: [
      'fad8c6e58259e2a50ad78e33caafaaba8a253bfb9c67dc351527f14cd4b194841a3826066179c2852bb7ee53abce8a9aaa06181b7c843f153507d06db4d1f5e53a18062542992265c897ce738aefeafaca67793b5ca71cf5d5e7338e94f1d4c45a78664423b90245eb772e93690ccadaea46585b3cc67dd5f5c710ad741137275cb595a771cc543114049ab8a686e1f94205ab376ed32b4e0a1a2a86989bfc04bf95b58750ed34517565ba9886a5c219a2e548174ef30a6f6a7a4ae7f9bbdc279c755567b30e14715444daf8e6c4a33982c56bf7ae13e98c4a5a6ac6d8dbbc46fd557547902df491b7a7fad8c6e58259e2a50ad78e33caafaaba8a253bfb9c67',
      '69fc8f71b8ffab98d6eac795f03be39e199fec5d94f3a7089f1aeebcdc17ef92891c6f3ef7df8bb8938aa7f5f53ec3be391063bd74bce828bf3aabf9bc77ea97a93c4fb1783f6b58dcaa87d5b07ba3de5915669d543367c85fdae4b69c57afd2c95c2fb47d1f4b78534a6735ff3483fe795023fd343662e87ffa6b397cb7e09d27881f9a6e3c5c976f12099cefbe775f0b38130a277575be433eb990e33df43c68a83fba2b793cf76a1729bccf31f8bfebd85c2a075530fb235ed995e61dd4b3e748df5a64361cd72f5249dcaf34fd9fcbf8d3cae7b57fb4037ef9d0a37db4b6e268ff7aebb9fc37601d69fc8f71b8ffab98d6eac795f03be39e199fec5d94f3',
    ],
  },
  {
    policy: '8:3',
    objectBytes: 1024,
    rows: ['8918d07d92a4f5fe', '36f8d0ce2519fb16', '5fcda3405048f69e'],
    parity: [
      '33b7cbafde6eef7af2fe75f260135123b5d4a8ccbd2dacea6cf87dfa0370126025a1ddafde4ecf5a2f68e3640b78710395e29edaab2dacca4cd8a02795e6790b2c6aec78fd7a83f092e0a5215d2f5ece4fdaafe863e48bf8f18315621e5a2bad2c4acc5820a71566f98b85017d1968d859ccafc843c4562567158309757a0b9b',
      'd1f6eb11a51ccf5deafe72a73c8a5645703924be0a9340cde8dfc1149325d9cae0c7da71c53cef7d674fc316209676655048558f3bf320edc8ff4c992294c5d6c04d685f419413a5594a60475af145bc6ffde7cf4396a016f6e5d0c8d50fbb73a06d487fcc19a214455640677a80348d5ecc87ef63b62d9b475461d4c92f9b02',
      'd46ef3719ae5d70713f33d0954bd198a22960b47acf3c1972f85e7d3628b0f9cb20895bf54c5f7273915dbefb85139aa021e8321ca3d0fb70fa5cdf9846de3704117af056753e20b8f1c3288153fd44577a7b9955b6f38d1b92a829e03a14abd8f378f254d7904ed63f012a835b75c2311c177b57b4f12fb5fcc6472ef816a35',
    ],
  },
  {
    policy: '16:4',
    objectBytes: 1024,
    rows: ['c53b1f2d4faa83c2616977a6e25f373a', '7d17d71360a9a89dcda37db4ab286d1a', '40243c124b6206d32eaef1c7a84eb453', 'c9bc7b2e6d0f652b4b149846588e015b'],
    parity: [
      'fefbf8fc25e28645ee26fb99914ac3ced9797a1ac37e1ad5d2c7b6d4c01baea39a5552473654409b2e23c9cccf18c1187cbfced70a680dd67f7265a1a22df49a',
      '21d785963bef170260c0cb3502ad0b57b35604fb5614ec9266801de318b7d5896c12e6009d6398375509a35507fa57f901141d909b654ee14f13f78bd979d478',
      '9f5a19e39b48d2302325d945c3b93e73a4bcff057d61fba067b29a06bdc7a3ee7b20e7321a863d47236eb47132631b079d7fcea25ec27e045d10c7ecaf2e56e1',
      '23e0a1e3f24160efa1f564438390004f9ea8e9061761407fbe6d7354d2c1317ec0ff3eedf3d45241b1fe8e4d0ccedf0425aa1e7deccb4556e0af7e7c3dabba4c',
    ],
  },
  {
    policy: '2:15',
    objectBytes: 512,
    rows: ['0302', '0504', '0908', '1110', '2120', '4140', '8180', '1c1d', '3b3a', '7574', 'e9e8', 'cccd', '8687', '1213', '2726'],
    parity: [],
  },
  {
    policy: '16:15',
    objectBytes: 512,
    rows: [
      'c53b1f2d4faa83c2616977a6e25f373a',
      '7d17d71360a9a89dcda37db4ab286d1a',
      '40243c124b6206d32eaef1c7a84eb453',
      'c9bc7b2e6d0f652b4b149846588e015b',
      '26791b1c131064169c1ebd769abc6423',
      'f17e9fa5d814255a0986c1335c544b39',
      '1b5ab3e439dd8e60f6700bf505773f28',
      'f8f6650fb3e41cb5f338a92ba7e87ce1',
      '81a2860d2b9f03f8c7da807dbe35b23f',
      'cfc02d132ef528f00fd578473d4aec4d',
      '4874c84e15fa6b5142ef70d76b9f45d5',
      '4bea5237da3d5e7958adf3cd7a2ee07a',
      'e47195d150e9788a13c535c2e2ee5deb',
      '6c11c7d2290c795b15870ce9cd0c7fa7',
      'a65eb0ce630b81e117089cd928dea586',
    ],
    parity: [
      'fefbf8fc25e28645ee26fb99914ac3ced9797a1ac37e1ad5d2c7b6d4c01baea3',
      '21d785963bef170260c0cb3502ad0b57b35604fb5614ec9266801de318b7d589',
      '9f5a19e39b48d2302325d945c3b93e73a4bcff057d61fba067b29a06bdc7a3ee',
      '23e0a1e3f24160efa1f564438390004f9ea8e9061761407fbe6d7354d2c1317e',
      '618228603b609f9148f4e41de1b89236c7b319510ae21d01e0133bc2c69fc763',
      'c8bf921c19435e1d2be0bda63e39381b7ee5c8090c9e838df89f819a2324a487',
      '807edf2c1dedacde2d1c7037a7948b24c80aab1829aeef4eb25c3f7886b555fa',
      '325583dfffc7b538d641d2a62f0dcf17621dcb77575d2fa8cdbaa2d60624ff27',
      'bca2a8cc16f49547c5dc1077be66ddd9d53b314f954e2fd7cbc597f02df58783',
      '542c041f723f9abbdcbf8023b7d8042248d4fc274a9d382b51391bb8cea1fddb',
      'c1ba93c1164137ae5a62e595df0a85a2cb9bb263b443353e472c2656c217fcdb',
      '792a1bb3b273621d455c3d2a8b88546b2ad5e48c8d31208ddc9ff7e0aba81926',
      'c3a472381885f77a22ab384c4f6da97104518786a6bac8ea8ff85622ecce9f47',
      'fe85ac60b7dbad34a6e5621257828cabc2654c5c8be294a4ddb6daaa45907453',
      '1b09078d85b1bbb3dfa3b5b9d0da2525256c628b830f052333315b57313b5050',
    ],
  },
]

/** The golden object: byte i is (i·7 + (i>>8)·13 + 1) mod 256 (the C program's input). */
function goldenObject(bytes: number): Uint8Array {
  return Uint8Array.from({ length: bytes }, (_, i) => (i * 7 + (i >> 8) * 13 + 1) & 0xff)
}

function policyOf(s: string): { d: number; p: number } {
  const [d, p] = s.split(':').map(Number)
  return { d: d!, p: p! }
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex')
}

/** Multiplication the slow, obvious way: shift-and-add with xtime reduction by 0x11D. */
function naiveMul(a: number, b: number): number {
  let acc = 0
  for (; b; b >>= 1) {
    if (b & 1) acc ^= a
    a <<= 1
    if (a & 0x100) a ^= 0x11d
  }
  return acc
}

t.test('GF(2^8) over 0x11D agrees with shift-and-add multiplication', async (t) => {
  let bad = 0
  for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) if (gfMul(a, b) !== naiveMul(a, b)) bad++
  t.equal(bad, 0)
  for (let a = 1; a < 256; a++) if (gfMul(a, gfInv(a)) !== 1) bad++
  t.equal(bad, 0, 'every non-zero element has its inverse')
  t.equal(gfPow(8), 0x1d, 'α^8 = x^4+x^3+x^2+1')
  t.equal(gfPow(255), 1)
})

t.test('2:1 by hand: V = [1 0; 1 1; 1 α], top block is its own inverse, parity row = (1·1+α·1, α) = (3, 2)', async (t) => {
  const m = encodingMatrix(2, 1)
  t.same([...m.cells], [1, 0, 0, 1, 3, 2])
  const data = crypto.randomBytes(SD_EC_DATA_STRIPE_SIZE)
  const strips = new ErasureCoder({ d: 2, p: 1 }).encode(data)
  const expect = Uint8Array.from({ length: 256 }, (_, i) => naiveMul(3, data[i]!) ^ naiveMul(2, data[256 + i]!))
  t.equal(hex(strips[2]!), hex(expect))
})

t.test('the encoding matrix is the original one', async (t) => {
  for (const g of GOLDEN) {
    const { d, p } = policyOf(g.policy)
    const m = encodingMatrix(d, p)
    t.same(
      Array.from({ length: p }, (_, i) => hex(m.cells.subarray((d + i) * d, (d + i + 1) * d))),
      g.rows,
      g.policy,
    )
  }
})

t.test('strip layout: strip j of stripe k at k·512/d of strip j', async (t) => {
  const data = crypto.randomBytes(3 * SD_EC_DATA_STRIPE_SIZE)
  for (const d of [2, 4, 8, 16]) {
    const strips = new ErasureCoder({ d, p: 1 }).encode(data)
    const unit = SD_EC_DATA_STRIPE_SIZE / d
    let bad = 0
    for (let i = 0; i < data.length; i++) {
      const k = Math.floor(i / SD_EC_DATA_STRIPE_SIZE)
      const j = Math.floor((i % SD_EC_DATA_STRIPE_SIZE) / unit)
      if (strips[j]![k * unit + (i % unit)] !== data[i]) bad++
    }
    t.equal(bad, 0, `d=${d}`)
    t.equal(strips[0]!.length, data.length / d)
  }
})

t.test('parity strips are the bytes the original writes', async (t) => {
  for (const g of GOLDEN) {
    if (g.parity.length === 0) continue
    const policy = policyOf(g.policy)
    for (const kernel of [tsKernel, wasmKernel ?? tsKernel]) {
      const strips = new ErasureCoder(policy, kernel).encode(goldenObject(g.objectBytes))
      t.same(strips.slice(policy.d).map(hex), g.parity, `${g.policy} ${kernel.name}`)
    }
  }
})

t.test('parity by naive multiplication matches the kernel (4:2, 8:3)', async (t) => {
  for (const policy of [
    { d: 4, p: 2 },
    { d: 8, p: 3 },
  ]) {
    const coder = new ErasureCoder(policy)
    const strips = coder.encode(crypto.randomBytes(4 * SD_EC_DATA_STRIPE_SIZE))
    for (let r = policy.d; r < coder.total; r++) {
      const expect = new Uint8Array(strips[0]!.length)
      for (let j = 0; j < policy.d; j++) for (let i = 0; i < expect.length; i++) expect[i]! ^= naiveMul(coder.matrix.cells[r * policy.d + j]!, strips[j]![i]!)
      t.equal(hex(strips[r]!), hex(expect), `${policy.d}:${policy.p} strip ${r}`)
    }
  }
})

t.test('the WASM kernel is there and agrees with the TypeScript one', async (t) => {
  t.ok(WebAssembly.validate(kernelModuleBytes()))
  t.ok(wasmKernel, 'Node 20 has WebAssembly SIMD')
  if (!wasmKernel) return
  for (const len of [0, 16, 32, 48, 64, 100, 1000, 4096, 65536 + 48, 1 << 20]) {
    const rows = 1 + (len % 5)
    const cols = 1 + (len % 7)
    const m = gfMatrix(rows, cols, crypto.randomBytes(rows * cols))
    m.cells[0] = 0 // a zero coefficient too
    const srcs = Array.from({ length: cols }, () => new Uint8Array(crypto.randomBytes(len)))
    const a = Array.from({ length: rows }, () => new Uint8Array(len))
    const b = Array.from({ length: rows }, () => new Uint8Array(len).fill(0xaa))
    tsKernel.apply(m, srcs, a)
    wasmKernel.apply(m, srcs, b)
    t.same(b.map(hex), a.map(hex), `${rows}×${cols} over ${len} bytes`)
  }
})

/** Every k-subset of 0..n-1, in lexicographic order. */
function* combinations(n: number, k: number, from = 0, prefix: number[] = []): Generator<number[]> {
  if (prefix.length === k) {
    yield prefix
    return
  }
  for (let i = from; i <= n - (k - prefix.length); i++) yield* combinations(n, k, i + 1, [...prefix, i])
}

t.test('decode and rebuild from every combination of P lost strips', async (t) => {
  for (const [policy, objectBytes] of [
    [{ d: 2, p: 1 }, 4 * SD_EC_DATA_STRIPE_SIZE],
    [{ d: 4, p: 2 }, 4 * SD_EC_DATA_STRIPE_SIZE],
    [{ d: 8, p: 3 }, 2 * SD_EC_DATA_STRIPE_SIZE],
    [{ d: 16, p: 4 }, 1 * SD_EC_DATA_STRIPE_SIZE],
  ] as const) {
    const coder = new ErasureCoder(policy)
    const data = new Uint8Array(crypto.randomBytes(objectBytes))
    const strips = coder.encode(data)
    let combos = 0
    let bad = 0
    for (const lost of combinations(coder.total, policy.p)) {
      combos++
      const have = new Map(strips.flatMap((s, i) => (lost.includes(i) ? [] : [[i, s] as const])))
      if (hex(coder.decode(have)) !== hex(data)) bad++
      for (const i of lost) if (hex(coder.rebuild(have, i)) !== hex(strips[i]!)) bad++
    }
    t.equal(bad, 0, `${policy.d}:${policy.p}: ${combos} combinations`)
  }
})

t.test('decode needs D strips', async (t) => {
  const coder = new ErasureCoder({ d: 4, p: 2 })
  const strips = coder.encode(new Uint8Array(SD_EC_DATA_STRIPE_SIZE))
  t.throws(() => coder.decode(new Map([0, 1, 5].map((i) => [i, strips[i]!]))))
  t.throws(() => coder.encode(new Uint8Array(100)), 'whole stripes only')
})

t.test('policies and the copy_policy byte', async (t) => {
  t.ok(isValidEcPolicy({ d: 16, p: 15 }))
  for (const bad of [
    { d: 3, p: 1 },
    { d: 4, p: 0 },
    { d: 4, p: 16 },
    { d: 32, p: 1 },
    { d: 6, p: 2 },
  ])
    t.notOk(isValidEcPolicy(bad), `${bad.d}:${bad.p}`)
  t.equal(ecCopyPolicy({ d: 4, p: 2 }), 0x22)
  t.equal(ecCopyPolicy({ d: 16, p: 15 }), 0x8f)
  t.same(ecPolicyOf(0x13), { d: 2, p: 3 })
  t.throws(() => ecPolicyOf(0x20))
  t.equal(erasureCoder({ d: 8, p: 3 }), erasureCoder(ecPolicyOf(0x43)), 'one coder per policy')
  t.throws(() => erasureCoder({ d: 5, p: 1 }))
})

t.test('matrix inversion', async (t) => {
  const m = encodingMatrix(8, 8)
  const sub = gfMatrix(8, 8, m.cells.slice(8 * 8))
  t.same([...matrixMultiply(sub, matrixInvert(sub)).cells], [...identityMatrix(8).cells])
})

t.test('split and join: both kernels agree, round-trip, and fall back for units not a multiple of 16', async (t) => {
  if (!wasmKernel) return
  for (const [n, unit] of [
    [2, 256],
    [4, 128],
    [8, 64],
    [16, 32],
    [3, 24],
  ] as const) {
    const object = new Uint8Array(crypto.randomBytes(n * unit * 5))
    const viaTs = Array.from({ length: n }, () => new Uint8Array(unit * 5))
    const viaWasm = Array.from({ length: n }, () => new Uint8Array(unit * 5))
    tsKernel.split(object, viaTs, unit)
    wasmKernel.split(object, viaWasm, unit)
    t.same(viaWasm.map(hex), viaTs.map(hex), `split ${n}×${unit}`)
    const back = new Uint8Array(object.length)
    wasmKernel.join(viaWasm, back, unit)
    t.equal(hex(back), hex(object), `join ${n}×${unit}`)
  }
})

t.test('caller buffers, unaligned inputs and a module memory that has to grow', async (t) => {
  const coder = new ErasureCoder({ d: 4, p: 2 })
  // a Buffer view at an odd offset, as a payload sliced out of a network frame would be
  const frame = crypto.randomBytes(8 * SD_EC_DATA_STRIPE_SIZE + 1)
  const data = frame.subarray(1)
  const into = Array.from({ length: 6 }, () => new Uint8Array(data.length / 4))
  const strips = coder.encode(data, into)
  t.equal(strips[5], into[5], 'parity written into the caller buffer')
  t.same(strips.map(hex), coder.encode(new Uint8Array(data)).map(hex))
  const out = new Uint8Array(data.length)
  t.equal(coder.decode(new Map([2, 3, 4, 5].map((i) => [i, strips[i]!.subarray(0)])), out), out)
  t.equal(hex(out), hex(data))
  // 16 MiB after small objects: the WASM memory grows between and within calls
  const big = new Uint8Array(crypto.randomBytes(16 << 20))
  const bigStrips = coder.encode(big)
  const rebuilt = coder.decode(new Map([1, 3, 4, 5].map((i) => [i, bigStrips[i]!])))
  t.ok(Buffer.from(rebuilt).equals(Buffer.from(big)), '16 MiB round trip with 2 strips lost')
  const viaTs = new ErasureCoder({ d: 4, p: 2 }, tsKernel).encode(big.subarray(0, 1 << 20))
  t.same(coder.encode(big.subarray(0, 1 << 20)).map(hex), viaTs.map(hex), 'after growing, WASM still agrees with TypeScript')
})
