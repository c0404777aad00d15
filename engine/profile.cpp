// Profiler (engine/profile.h): the device-independent part; CUDA events in engine/cuda/profile.cu.
#include "engine/profile.h"

#include <cstring>

namespace u2pl {

Profiler::Profiler(Context& ctx) : ctx_(ctx) {
  U2PL_CHECK(ctx.profiler() == nullptr, "profiler: the context already has one");
  if (ctx.device() == Device::CUDA) cuda_ = create_cuda_events();
  ctx.set_profiler(this);
}

Profiler::~Profiler() {
  ctx_.set_profiler(nullptr);
  destroy_cuda_events(cuda_);
}

int Profiler::entry_of(const char* name, int depth) {
  for (size_t i = 0; i < entries_.size(); ++i)
    if (std::strcmp(entries_[i].name.c_str(), name) == 0) return static_cast<int>(i);
  entries_.push_back(Entry{name, depth, 0, 0, 0});
  return static_cast<int>(entries_.size()) - 1;
}

void Profiler::begin(const char* name, double flops) {
  Mark m{entry_of(name, static_cast<int>(open_.size())), flops, -1, {}};
  if (cuda_)
    m.start_event = cuda_event_record(*cuda_, ctx_.cuda());
  else
    m.start_time = std::chrono::steady_clock::now();
  open_.push_back(m);
}

void Profiler::end() {
  U2PL_CHECK(!open_.empty(), "profiler: end() without begin()");
  const Mark m = open_.back();
  open_.pop_back();
  Interval iv{m.entry, m.flops, m.start_event, -1, 0};
  if (cuda_)
    iv.end_event = cuda_event_record(*cuda_, ctx_.cuda());
  else
    iv.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - m.start_time).count();
  pending_.push_back(iv);
}

void Profiler::collect() {
  U2PL_CHECK(open_.empty(), "profiler: collect() inside an open interval");
  for (const Interval& iv : pending_) {
    Entry& e = entries_[static_cast<size_t>(iv.entry)];
    e.calls += 1;
    e.ms += cuda_ ? cuda_event_ms(*cuda_, iv.start_event, iv.end_event) : iv.ms;
    e.flops += iv.flops;
  }
  pending_.clear();
  if (cuda_) cuda_events_release(*cuda_);
}

}  // namespace u2pl
