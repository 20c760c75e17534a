// The libcpg binding of the corosync cluster driver (sheep/cluster/corosync.ts): the few calls
// the driver needs and nothing else. initialize, join, mcast (CPG_TYPE_AGREED), local node id,
// finalize; libcpg's file descriptor is watched by libuv (uv_poll), so cpg_dispatch runs only
// when corosync has something for us: no timers, no thread. Deliveries and configuration
// changes are handed to JavaScript right after each cpg_dispatch, in corosync's order.
// Every call returns corosync's cs_error_t; retrying on CS_ERR_TRY_AGAIN is the caller's choice.
#include <corosync/cpg.h>
#include <napi.h>
#include <uv.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

class Cpg : public Napi::ObjectWrap<Cpg> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "Cpg",
                                      {
                                          InstanceMethod("initialize", &Cpg::Initialize),
                                          InstanceMethod("join", &Cpg::Join),
                                          InstanceMethod("mcast", &Cpg::Mcast),
                                          InstanceMethod("localNodeId", &Cpg::LocalNodeId),
                                          InstanceMethod("finalize", &Cpg::Finalize),
                                      });
    exports.Set("Cpg", ctor);
    exports.Set("CS_OK", Napi::Number::New(env, CS_OK));
    exports.Set("CS_ERR_TRY_AGAIN", Napi::Number::New(env, CS_ERR_TRY_AGAIN));
    exports.Set("CS_ERR_SECURITY", Napi::Number::New(env, CS_ERR_SECURITY));
    return exports;
  }

  // new Cpg(onDeliver(nodeid, pid, message), onConfchg(members, left, joined), onError(code))
  explicit Cpg(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Cpg>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsFunction() || !info[1].IsFunction() || !info[2].IsFunction()) {
      Napi::TypeError::New(env, "Cpg(onDeliver, onConfchg, onError)").ThrowAsJavaScriptException();
      return;
    }
    deliver_ = Napi::Persistent(info[0].As<Napi::Function>());
    confchg_ = Napi::Persistent(info[1].As<Napi::Function>());
    error_ = Napi::Persistent(info[2].As<Napi::Function>());
    async_ = std::make_unique<Napi::AsyncContext>(env, "sheepdog:cpg");
  }

  // only reached once finalized (an open handle holds a reference), or at the environment's teardown
  ~Cpg() override { Close(false); }

 private:
  Napi::Value Initialize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (open_) return Napi::Number::New(env, CS_ERR_EXIST);
    cpg_callbacks_t callbacks{};
    callbacks.cpg_deliver_fn = &Cpg::OnDeliver;
    callbacks.cpg_confchg_fn = &Cpg::OnConfchg;
    cs_error_t err = cpg_initialize(&handle_, &callbacks);
    if (err != CS_OK) return Napi::Number::New(env, err);
    cpg_context_set(handle_, this);
    int fd = -1;
    err = cpg_fd_get(handle_, &fd);
    if (err != CS_OK) {
      cpg_finalize(handle_);
      return Napi::Number::New(env, err);
    }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    poll_->data = this;
    if (uv_poll_init(loop, poll_, fd) != 0 || uv_poll_start(poll_, UV_READABLE | UV_DISCONNECT, &Cpg::OnReadable) != 0) {
      delete poll_;
      poll_ = nullptr;
      cpg_finalize(handle_);
      return Napi::Number::New(env, CS_ERR_LIBRARY);
    }
    open_ = true;
    Ref();  // the poll handle points at this object until finalize
    return Napi::Number::New(env, CS_OK);
  }

  Napi::Value Join(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!open_) return Napi::Number::New(env, CS_ERR_BAD_HANDLE);
    std::string name = info[0].As<Napi::String>().Utf8Value();
    cpg_name group{};
    if (name.size() > sizeof(group.value)) return Napi::Number::New(env, CS_ERR_INVALID_PARAM);
    group.length = static_cast<uint32_t>(name.size());
    std::memcpy(group.value, name.data(), name.size());
    return Napi::Number::New(env, cpg_join(handle_, &group));
  }

  // mcast([buffer, ...]): one message of the concatenated buffers, in agreed (total) order
  Napi::Value Mcast(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!open_) return Napi::Number::New(env, CS_ERR_BAD_HANDLE);
    Napi::Array parts = info[0].As<Napi::Array>();
    std::vector<struct iovec> iov(parts.Length());
    for (uint32_t i = 0; i < parts.Length(); i++) {
      Napi::Buffer<uint8_t> b = parts.Get(i).As<Napi::Buffer<uint8_t>>();
      iov[i].iov_base = b.Data();
      iov[i].iov_len = b.Length();
    }
    return Napi::Number::New(env, cpg_mcast_joined(handle_, CPG_TYPE_AGREED, iov.data(), iov.size()));
  }

  Napi::Value LocalNodeId(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!open_) return env.Null();
    unsigned int nodeid = 0;
    cs_error_t err = cpg_local_get(handle_, &nodeid);
    if (err != CS_OK) return env.Null();
    return Napi::Number::New(env, nodeid);
  }

  Napi::Value Finalize(const Napi::CallbackInfo& info) {
    // JavaScript never runs inside cpg_dispatch (see OnReadable): closing here is safe
    Close(true);
    return info.Env().Undefined();
  }

  void Close(bool unref) {
    if (!open_) return;
    open_ = false;
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
    cpg_finalize(handle_);
    if (unref) Unref();
  }

  // libcpg's dispatch keeps a 1 MiB buffer on the stack: JavaScript is called only after it
  // returns, or V8 would find its stack limit already passed.
  static void OnReadable(uv_poll_t* poll, int status, int events) {
    Cpg* self = static_cast<Cpg*>(poll->data);
    if (!self->open_) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    cs_error_t err = CS_OK;
    if (status < 0 || (events & UV_DISCONNECT)) {
      err = CS_ERR_LIBRARY;
    } else {
      err = cpg_dispatch(self->handle_, CS_DISPATCH_ALL);
    }
    self->Flush();
    if (self->open_ && err != CS_OK && err != CS_ERR_TRY_AGAIN) {
      // corosync went away: stop watching and tell the driver, which stops the node
      self->Close(true);
      self->Call(self->error_, {Napi::Number::New(env, err)});
    }
  }

  void Call(Napi::FunctionReference& fn, const std::initializer_list<napi_value>& args) {
    Napi::Env env = Env();
    fn.MakeCallback(Value(), args, *async_);
    if (env.IsExceptionPending()) {
      // the driver's handlers must not throw; if one did, crash like any uncaught exception
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

  static Cpg* FromHandle(cpg_handle_t handle) {
    void* context = nullptr;
    cpg_context_get(handle, &context);
    return static_cast<Cpg*>(context);
  }

  static void OnDeliver(cpg_handle_t handle, const struct cpg_name*, uint32_t nodeid, uint32_t pid, void* msg,
                        size_t msg_len) {
    Cpg* self = FromHandle(handle);
    if (self == nullptr || !self->open_) return;
    Event e;
    e.deliver = true;
    e.nodeid = nodeid;
    e.pid = pid;
    const uint8_t* bytes = static_cast<const uint8_t*>(msg);
    e.message.assign(bytes, bytes + msg_len);
    self->events_.push_back(std::move(e));
  }

  static Napi::Array Addresses(Napi::Env env, const std::vector<cpg_address>& list) {
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) {
      Napi::Object a = Napi::Object::New(env);
      a.Set("nodeid", Napi::Number::New(env, list[i].nodeid));
      a.Set("pid", Napi::Number::New(env, list[i].pid));
      a.Set("reason", Napi::Number::New(env, list[i].reason));
      out.Set(static_cast<uint32_t>(i), a);
    }
    return out;
  }

  static void OnConfchg(cpg_handle_t handle, const struct cpg_name*, const struct cpg_address* members, size_t nMembers,
                        const struct cpg_address* left, size_t nLeft, const struct cpg_address* joined, size_t nJoined) {
    Cpg* self = FromHandle(handle);
    if (self == nullptr || !self->open_) return;
    Event e;
    e.members.assign(members, members + nMembers);
    e.left.assign(left, left + nLeft);
    e.joined.assign(joined, joined + nJoined);
    self->events_.push_back(std::move(e));
  }

  // Hands the events cpg_dispatch collected to JavaScript, in corosync's order.
  void Flush() {
    Napi::Env env = Env();
    std::vector<Event> events;
    events.swap(events_);
    for (const Event& e : events) {
      if (!open_) return;  // finalized by an earlier handler
      Napi::HandleScope scope(env);
      if (e.deliver) {
        Call(deliver_, {Napi::Number::New(env, e.nodeid), Napi::Number::New(env, e.pid),
                        Napi::Buffer<uint8_t>::Copy(env, e.message.data(), e.message.size())});
      } else {
        Call(confchg_, {Addresses(env, e.members), Addresses(env, e.left), Addresses(env, e.joined)});
      }
    }
  }

  /** One callback of cpg_dispatch, kept until dispatch has returned. */
  struct Event {
    bool deliver = false;
    uint32_t nodeid = 0;
    uint32_t pid = 0;
    std::vector<uint8_t> message;
    std::vector<cpg_address> members, left, joined;
  };

  Napi::FunctionReference deliver_;
  Napi::FunctionReference confchg_;
  Napi::FunctionReference error_;
  std::unique_ptr<Napi::AsyncContext> async_;
  cpg_handle_t handle_ = 0;
  uv_poll_t* poll_ = nullptr;
  std::vector<Event> events_;
  bool open_ = false;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) { return Cpg::Init(env, exports); }

}  // namespace

NODE_API_MODULE(sheepdog_cpg, Init)
