// CRC-32 for the checksum layer (sheep/store/crc32.ts): the zlib/gzip CRC (reflected polynomial
// 0xEDB88320), the same value as zlib.crc32(data, prev) for every input, computed with
// carry-less multiplication (PCLMULQDQ). The layer checks every byte a sheep reads and sums
// every byte it writes; zlib's crc32 in Node 20 is a scalar loop (~5 GB/s alone on this
// project's machines, far less when the CPUs are shared), and WebAssembly has no carry-less
// multiply, so this is native code. Without PCLMULQDQ (or off x86-64) `accelerated` is false
// and the layer keeps using zlib.
//
// Method: folding (Gopal et al., "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
// Instruction", Intel, 2009), with the constants derived here at load, in the reflected bit
// order:
// - A 16-byte chunk X loaded little-endian stands for X(x) = sum of bit k times x^(127-k) (a
//   reflected CRC takes each byte's bit 0 first). With L and H its low and high 8 bytes,
//   X = L x^64 + H.
// - The carry-less product of two 64-bit reflected values A and B, read as a reflected 128-bit
//   value, is x A B (the product has 127 bits and lands one place low).
// - So X x^D (mod P), the chunk moved D bits further along the message, is
//   clmul(L, K(63 + D)) xor clmul(H, K(D - 1)), where K(n) is x^n mod P in reflected form: a
//   value of at most 96 bits that is XORed into the chunk D bits later without changing the CRC.
// - Four chunks are folded at a time over 64 bytes (D = 512), then into one another (D = 128),
//   and what is left — one chunk standing for the whole folded message — gets its CRC byte by
//   byte, as does a tail shorter than a chunk.
//
// preadCrc32Blocks reads an object's bytes and checksums them in the same go, on a thread of
// libuv's pool: a large read goes to the pool anyway, and each piece (up to 1 MiB) is checksummed
// right after the kernel copied it in; the event loop, which serves every client of the sheep,
// does neither.
#include <napi.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cstdlib>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

constexpr uint32_t kPolyReflected = 0xEDB88320u;
/** The same polynomial in normal bit order, with its x^32 term. */
constexpr uint64_t kPolyNormal = 0x104C11DB7ull;
/** Below this many bytes the byte-at-a-time loop is as fast as setting up the folds. */
constexpr size_t kFoldMinBytes = 64;

uint32_t byteTable[256];

void InitByteTable() {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; bit++) c = (c & 1) ? (c >> 1) ^ kPolyReflected : c >> 1;
    byteTable[i] = c;
  }
}

/** The CRC register after `n` more bytes (no inversion: the caller does that). */
uint32_t Bytewise(uint32_t reg, const uint8_t* p, size_t n) {
  while (n-- > 0) reg = byteTable[(reg ^ *p++) & 0xff] ^ (reg >> 8);
  return reg;
}

/** x^n mod P, in normal bit order. */
uint32_t XPowModP(unsigned n) {
  uint64_t v = 1;
  for (unsigned i = 0; i < n; i++) {
    v <<= 1;
    if (v & (1ull << 32)) v ^= kPolyNormal;
  }
  return static_cast<uint32_t>(v);
}

uint32_t Reflect32(uint32_t v) {
  uint32_t r = 0;
  for (int i = 0; i < 32; i++)
    if (v & (1u << i)) r |= 1u << (31 - i);
  return r;
}

/** K(n): x^n mod P as a reflected 64-bit value (degree below 32: the high half). */
uint64_t FoldConstant(unsigned n) { return static_cast<uint64_t>(Reflect32(XPowModP(n))) << 32; }

#if defined(__x86_64__)
bool accelerated = false;
/** The constants for folding by 512 and by 128 bits: K(63 + D) for the low half, K(D - 1) for the high. */
uint64_t fold512Low, fold512High, fold128Low, fold128High;

__attribute__((target("pclmul,sse4.1"))) inline __m128i Fold(__m128i x, __m128i k) {
  return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

__attribute__((target("pclmul,sse4.1"))) inline __m128i Load(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

/** The CRC register after a folded chunk `x` standing for everything before `p`, and `n` more bytes. */
__attribute__((target("pclmul,sse4.1"))) uint32_t Finish(__m128i x, __m128i k128, const uint8_t* p, size_t n) {
  for (; n >= 16; p += 16, n -= 16) x = _mm_xor_si128(Fold(x, k128), Load(p));
  alignas(16) uint8_t last[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(last), x);
  return Bytewise(Bytewise(0, last, 16), p, n);
}

/** The CRC register after `n` (at least kFoldMinBytes) more bytes: four chunks at a time. */
__attribute__((target("pclmul,sse4.1"))) uint32_t Folded(uint32_t reg, const uint8_t* p, size_t n) {
  const __m128i k512 = _mm_set_epi64x(static_cast<long long>(fold512High), static_cast<long long>(fold512Low));
  const __m128i k128 = _mm_set_epi64x(static_cast<long long>(fold128High), static_cast<long long>(fold128Low));
  // the register goes into the first four bytes of the message
  __m128i x0 = _mm_xor_si128(Load(p), _mm_cvtsi32_si128(static_cast<int>(reg)));
  __m128i x1 = Load(p + 16);
  __m128i x2 = Load(p + 32);
  __m128i x3 = Load(p + 48);
  p += 64;
  n -= 64;
  for (; n >= 64; p += 64, n -= 64) {
    x0 = _mm_xor_si128(Fold(x0, k512), Load(p));
    x1 = _mm_xor_si128(Fold(x1, k512), Load(p + 16));
    x2 = _mm_xor_si128(Fold(x2, k512), Load(p + 32));
    x3 = _mm_xor_si128(Fold(x3, k512), Load(p + 48));
  }
  x1 = _mm_xor_si128(x1, Fold(x0, k128));
  x2 = _mm_xor_si128(x2, Fold(x1, k128));
  x3 = _mm_xor_si128(x3, Fold(x2, k128));
  return Finish(x3, k128, p, n);
}

#define WIDE_TARGET __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1")))
/** AVX-512 with VPCLMULQDQ: sixteen chunks at a time, four to a 64-byte register. */
bool wide = false;
/** Below this many bytes the 16-chunk loop does not run once. */
constexpr size_t kWideMinBytes = 256;
uint64_t fold2048Low, fold2048High;

WIDE_TARGET inline __m512i Repeat(uint64_t low, uint64_t high) {
  return _mm512_set_epi64(static_cast<long long>(high), static_cast<long long>(low), static_cast<long long>(high), static_cast<long long>(low),
                          static_cast<long long>(high), static_cast<long long>(low), static_cast<long long>(high), static_cast<long long>(low));
}

/** Every 16-byte lane of z moved D bits along and XORed with `next` (k: that D's constants). */
WIDE_TARGET inline __m512i FoldWide(__m512i z, __m512i k, __m512i next) {
  // 0x96: a xor b xor c
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(z, k, 0x00), _mm512_clmulepi64_epi128(z, k, 0x11), next, 0x96);
}

WIDE_TARGET uint32_t FoldedWide(uint32_t reg, const uint8_t* p, size_t n) {
  const __m512i k2048 = Repeat(fold2048Low, fold2048High);
  const __m512i k512 = Repeat(fold512Low, fold512High);
  const __m128i k128 = _mm_set_epi64x(static_cast<long long>(fold128High), static_cast<long long>(fold128Low));
  __m512i z0 = _mm512_xor_si512(_mm512_loadu_si512(p), _mm512_inserti32x4(_mm512_setzero_si512(), _mm_cvtsi32_si128(static_cast<int>(reg)), 0));
  __m512i z1 = _mm512_loadu_si512(p + 64);
  __m512i z2 = _mm512_loadu_si512(p + 128);
  __m512i z3 = _mm512_loadu_si512(p + 192);
  p += 256;
  n -= 256;
  for (; n >= 256; p += 256, n -= 256) {
    z0 = FoldWide(z0, k2048, _mm512_loadu_si512(p));
    z1 = FoldWide(z1, k2048, _mm512_loadu_si512(p + 64));
    z2 = FoldWide(z2, k2048, _mm512_loadu_si512(p + 128));
    z3 = FoldWide(z3, k2048, _mm512_loadu_si512(p + 192));
  }
  z1 = FoldWide(z0, k512, z1);
  z2 = FoldWide(z1, k512, z2);
  z3 = FoldWide(z2, k512, z3);
  for (; n >= 64; p += 64, n -= 64) z3 = FoldWide(z3, k512, _mm512_loadu_si512(p));
  // its four lanes, 16 bytes apart, into one
  alignas(64) uint8_t lanes[64];
  _mm512_store_si512(lanes, z3);
  __m128i x = Load(lanes);
  for (int lane = 1; lane < 4; lane++) x = _mm_xor_si128(Fold(x, k128), Load(lanes + 16 * lane));
  return Finish(x, k128, p, n);
}

void InitFolding() {
  __builtin_cpu_init();
  accelerated = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  wide = accelerated && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq") && !getenv("SHEEPDOG_CRC32_NO_AVX512");
  fold2048Low = FoldConstant(63 + 2048);
  fold2048High = FoldConstant(2048 - 1);
  fold512Low = FoldConstant(63 + 512);
  fold512High = FoldConstant(512 - 1);
  fold128Low = FoldConstant(63 + 128);
  fold128High = FoldConstant(128 - 1);
}

uint32_t Register(uint32_t reg, const uint8_t* p, size_t n) {
  if (wide && n >= kWideMinBytes) return FoldedWide(reg, p, n);
  return accelerated && n >= kFoldMinBytes ? Folded(reg, p, n) : Bytewise(reg, p, n);
}
#else
constexpr bool accelerated = false;
constexpr bool wide = false;
void InitFolding() {}
uint32_t Register(uint32_t reg, const uint8_t* p, size_t n) { return Bytewise(reg, p, n); }
#endif

/** The bytes of a typed array or Buffer argument, or false (a TypeError thrown). */
bool BytesOf(const Napi::CallbackInfo& info, size_t at, const uint8_t** data, size_t* length) {
  if (info.Length() <= at || !info[at].IsTypedArray()) {
    Napi::TypeError::New(info.Env(), "expected a Uint8Array").ThrowAsJavaScriptException();
    return false;
  }
  Napi::TypedArray array = info[at].As<Napi::TypedArray>();
  if (array.TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(info.Env(), "expected a Uint8Array").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Uint8Array bytes = array.As<Napi::Uint8Array>();
  *data = bytes.Data();
  *length = bytes.ByteLength();
  return true;
}

// crc32(data, prev = 0) -> the CRC-32 of data continuing prev, as zlib.crc32(data, prev)
Napi::Value Crc32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data;
  size_t length;
  if (!BytesOf(info, 0, &data, &length)) return env.Undefined();
  uint32_t prev = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  return Napi::Number::New(env, ~Register(~prev, data, length));
}

/** The CRC-32 of each blockBytes of data[0, length) (the last block may be short) into crcs. */
void BlockCrcs(const uint8_t* data, size_t length, size_t block, uint32_t* crcs) {
  for (size_t from = 0, b = 0; from < length; from += block, b++) {
    const size_t n = length - from < block ? length - from : block;
    crcs[b] = ~Register(~0u, data + from, n);
  }
}

// crc32Blocks(data, blockBytes, out, outIndex): the CRC-32 of each blockBytes of data (the last
// block may be short) into out[outIndex], out[outIndex + 1], … (a Uint32Array)
Napi::Value Crc32Blocks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data;
  size_t length;
  if (!BytesOf(info, 0, &data, &length)) return env.Undefined();
  if (info.Length() < 4 || !info[1].IsNumber() || !info[2].IsTypedArray() || !info[3].IsNumber() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    Napi::TypeError::New(env, "crc32Blocks(data, blockBytes, out: Uint32Array, outIndex)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int64_t blockBytes = info[1].As<Napi::Number>().Int64Value();
  const int64_t outIndex = info[3].As<Napi::Number>().Int64Value();
  Napi::Uint32Array out = info[2].As<Napi::Uint32Array>();
  if (blockBytes <= 0 || outIndex < 0) {
    Napi::RangeError::New(env, "blockBytes must be positive and outIndex not negative").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const size_t block = static_cast<size_t>(blockBytes);
  const size_t blocks = (length + block - 1) / block;
  if (static_cast<size_t>(outIndex) + blocks > out.ElementLength()) {
    Napi::RangeError::New(env, "out is too short for the blocks").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  BlockCrcs(data, length, block, out.Data() + outIndex);
  return env.Undefined();
}

/**
 * preadCrc32Blocks reads this much at a time before it checksums it. Measured on this project's
 * machines (page-cache reads, AVX-512 kernel): a 1 MiB read then its CRCs took 55-59 µs, eight
 * 128 KiB reads each followed by its CRCs 81-85 µs. Each pread has a fixed cost that staying
 * inside L2 did not win back; above 1 MiB the pieces make no difference.
 */
constexpr size_t kReadPieceBytes = 1024 * 1024;

class PreadCrcWorker : public Napi::AsyncWorker {
 public:
  PreadCrcWorker(Napi::Env env, int fd, Napi::Uint8Array buffer, int64_t offset, size_t block, Napi::Uint32Array out)
      : Napi::AsyncWorker(env),
        fd_(fd),
        data_(buffer.Data()),
        length_(buffer.ByteLength()),
        offset_(offset),
        block_(block),
        crcs_(out.Data()),
        buffer_(Napi::Persistent(buffer)),
        out_(Napi::Persistent(out)),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    // whole blocks per piece, so a piece's blocks are checksummed as soon as it is in
    const size_t piece = block_ >= kReadPieceBytes ? block_ : kReadPieceBytes / block_ * block_;
    size_t filled = 0;
    size_t summed = 0;
    while (filled < length_) {
      const size_t want = length_ - filled < piece ? length_ - filled : piece;
      const ssize_t n = pread(fd_, data_ + filled, want, offset_ + static_cast<int64_t>(filled));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        result_ = -static_cast<double>(errno);
        return;
      }
      if (n == 0) break;
      filled += static_cast<size_t>(n);
      const size_t whole = filled / block_ * block_;
      BlockCrcs(data_ + summed, whole - summed, block_, crcs_ + summed / block_);
      summed = whole;
    }
    // past the end of the file the bytes read as zeros
    if (filled < length_) memset(data_ + filled, 0, length_ - filled);
    BlockCrcs(data_ + summed, length_ - summed, block_, crcs_ + summed / block_);
    result_ = static_cast<double>(filled);
  }

  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), result_)); }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  int fd_;
  uint8_t* data_;
  size_t length_;
  int64_t offset_;
  size_t block_;
  uint32_t* crcs_;
  // the arrays stay alive (and in place) until the read is done
  Napi::Reference<Napi::Uint8Array> buffer_;
  Napi::Reference<Napi::Uint32Array> out_;
  Napi::Promise::Deferred deferred_;
  double result_ = 0;
};

// preadCrc32Blocks(fd, buffer, offset, blockBytes, out) -> Promise<number>: fills buffer from
// the file's offset (bytes past its end read as zeros) and writes the CRC-32 of each blockBytes
// of buffer into out[0], out[1], …; resolves with how many bytes came from the file, or -errno
Napi::Value PreadCrc32Blocks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsNumber() || !info[3].IsNumber() ||
      !info[4].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    Napi::TypeError::New(env, "preadCrc32Blocks(fd, buffer: Uint8Array, offset, blockBytes, out: Uint32Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array buffer = info[1].As<Napi::Uint8Array>();
  Napi::Uint32Array out = info[4].As<Napi::Uint32Array>();
  const int64_t offset = info[2].As<Napi::Number>().Int64Value();
  const int64_t blockBytes = info[3].As<Napi::Number>().Int64Value();
  if (offset < 0 || blockBytes <= 0) {
    Napi::RangeError::New(env, "offset must not be negative and blockBytes must be positive").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const size_t block = static_cast<size_t>(blockBytes);
  if ((buffer.ByteLength() + block - 1) / block > out.ElementLength()) {
    Napi::RangeError::New(env, "out is too short for the blocks").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new PreadCrcWorker(env, info[0].As<Napi::Number>().Int32Value(), buffer, offset, block, out);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitByteTable();
  InitFolding();
  exports.Set("crc32", Napi::Function::New(env, Crc32));
  exports.Set("crc32Blocks", Napi::Function::New(env, Crc32Blocks));
  exports.Set("preadCrc32Blocks", Napi::Function::New(env, PreadCrc32Blocks));
  exports.Set("accelerated", Napi::Boolean::New(env, accelerated));
  exports.Set("wide", Napi::Boolean::New(env, wide));
  return exports;
}

}  // namespace

NODE_API_MODULE(sheepdog_crc32, Init)
