// The system calls and C library settings Node lacks: syncfs, preadv2 and writes in pieces for the
// object store (sheep/store/native-io.ts), mallopt for programs that move a VDI's bytes (lib/malloc.ts).
// syncfs(2) for the object store's flush: Node has fsync and fdatasync of one file but nothing
// that makes a whole filesystem durable at once. A flush after many
// unstable writes (NBD's write-back cache) otherwise costs one fdatasync — one disk cache
// flush — per object written since the last flush; syncfs costs one. It runs on libuv's thread
// pool (a Napi::AsyncWorker) and resolves with 0 or the errno.
#include <malloc.h>
#include <napi.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace {

class SyncfsWorker : public Napi::AsyncWorker {
 public:
  SyncfsWorker(Napi::Env env, int fd) : Napi::AsyncWorker(env), fd_(fd), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override { error_ = syncfs(fd_) == 0 ? 0 : errno; }

  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), error_)); }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  int fd_;
  int error_ = 0;
  Napi::Promise::Deferred deferred_;
};

// syncfs(fd) -> Promise<number>: 0, or the errno of the call
Napi::Value Syncfs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "syncfs(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new SyncfsWorker(env, info[0].As<Napi::Number>().Int32Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// A write into the page cache in pieces of at most `pieceBytes`, then fdatasync when asked, on
// libuv's thread pool: the kernel (ext4 since Linux 6.16) gives a write page-cache folios as
// large as the write, and a later 4 KiB write into a large folio walks every block of it: 12-34
// us per 4 KiB write after 1-4 MiB writes against ~4 after 4 KiB ones, on the event loop of
// every replica. Pieces keep the folios small; doing them all in one job costs one trip.
class PwritePiecesWorker : public Napi::AsyncWorker {
 public:
  PwritePiecesWorker(Napi::Env env, int fd, Napi::Uint8Array buffer, int64_t position, size_t pieceBytes, bool datasync)
      : Napi::AsyncWorker(env),
        fd_(fd),
        data_(buffer.Data()),
        length_(buffer.ByteLength()),
        position_(position),
        pieceBytes_(pieceBytes),
        datasync_(datasync),
        buffer_(Napi::Persistent(buffer)),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    size_t done = 0;
    while (done < length_) {
      size_t piece = length_ - done < pieceBytes_ ? length_ - done : pieceBytes_;
      ssize_t n = pwrite(fd_, data_ + done, piece, position_ + static_cast<int64_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error_ = errno;
        return;
      }
      if (n == 0) {
        error_ = EIO;
        return;
      }
      done += static_cast<size_t>(n);
    }
    while (datasync_ && fdatasync(fd_) != 0) {
      if (errno == EINTR) continue;
      error_ = errno;
      return;
    }
  }

  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), error_)); }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  int fd_;
  uint8_t* data_;
  size_t length_;
  int64_t position_;
  size_t pieceBytes_;
  bool datasync_;
  int error_ = 0;
  // keeps the bytes alive (and unmoved) while a pool thread writes them
  Napi::Reference<Napi::Uint8Array> buffer_;
  Napi::Promise::Deferred deferred_;
};

// pwritePieces(fd, buffer, position, pieceBytes, datasync) -> Promise<number>: 0 once every byte
// is written (and, with datasync, durable), or the errno of the call that failed
Napi::Value PwritePieces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsNumber() || !info[3].IsNumber() ||
      !info[4].IsBoolean() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      info[3].As<Napi::Number>().Int64Value() <= 0) {
    Napi::TypeError::New(env, "pwritePieces(fd, buffer: Uint8Array, position, pieceBytes > 0, datasync)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new PwritePiecesWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Uint8Array>(),
                                        info[2].As<Napi::Number>().Int64Value(),
                                        static_cast<size_t>(info[3].As<Napi::Number>().Int64Value()), info[4].As<Napi::Boolean>().Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// preadNoWait(fd, buffer, offset) -> bytes read, or -errno: preadv2 with RWF_NOWAIT, on the
// calling thread: it reads only what the page cache holds and answers -EAGAIN rather than
// wait for the disk, so a read served from memory needs no trip to the thread pool
Napi::Value PreadNoWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsNumber() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "preadNoWait(fd, buffer: Uint8Array, offset)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array buffer = info[1].As<Napi::Uint8Array>();
  struct iovec iov = {buffer.Data(), buffer.ByteLength()};
  ssize_t n = preadv2(info[0].As<Napi::Number>().Int32Value(), &iov, 1, info[2].As<Napi::Number>().Int64Value(), RWF_NOWAIT);
  return Napi::Number::New(env, n >= 0 ? static_cast<double>(n) : -static_cast<double>(errno));
}

// mallocKeepInHeap(mmapThresholdBytes, trimThresholdBytes) -> whether glibc took both:
// mallopt(3) at run time, what MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ do at start
Napi::Value MallocKeepInHeap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "mallocKeepInHeap(mmapThresholdBytes, trimThresholdBytes)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  bool mmap = mallopt(M_MMAP_THRESHOLD, info[0].As<Napi::Number>().Int32Value()) == 1;
  bool trim = mallopt(M_TRIM_THRESHOLD, info[1].As<Napi::Number>().Int32Value()) == 1;
  return Napi::Boolean::New(env, mmap && trim);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("syncfs", Napi::Function::New(env, Syncfs));
  exports.Set("preadNoWait", Napi::Function::New(env, PreadNoWait));
  exports.Set("pwritePieces", Napi::Function::New(env, PwritePieces));
  exports.Set("mallocKeepInHeap", Napi::Function::New(env, MallocKeepInHeap));
  return exports;
}

}  // namespace

NODE_API_MODULE(sheepdog_storeio, Init)
