// Where a training step's time goes: named, nestable intervals timed on the device's own clock —
// CUDA events on the context's stream (nothing synchronises until collect()), the host clock on
// the CPU, where ops run synchronously — with a FLOP count per interval for throughput. A Context
// carries at most one Profiler; ProfileScope marks an interval and costs a pointer test when none
// is attached. u2pl_bench step --profile reports the phases of TrainStep::step (depth 0) and the
// convolutions inside them. Covered by tests/test_engine.cpp.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/context.h"

namespace u2pl {

struct CudaEvents;  // engine/cuda/profile.cu: a pool of CUDA events

class Profiler {
 public:
  // Attaches itself to ctx until destroyed.
  explicit Profiler(Context& ctx);
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  void begin(const char* name, double flops);
  void end();
  // Adds the intervals recorded since the last collect() to the totals (waits for the device).
  void collect();

  struct Entry {
    std::string name;
    int depth = 0;      // nesting depth at its first interval (0: a phase)
    int64_t calls = 0;  // intervals collected
    double ms = 0;      // their total time
    double flops = 0;   // their total floating-point operations (0: not counted)
  };
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  struct Mark {
    int entry;
    double flops;
    int start_event;                                    // CUDA
    std::chrono::steady_clock::time_point start_time;  // CPU
  };
  struct Interval {
    int entry;
    double flops;
    int start_event, end_event;  // CUDA
    double ms;                   // CPU
  };
  int entry_of(const char* name, int depth);
  Context& ctx_;
  CudaEvents* cuda_ = nullptr;  // owned; CUDA contexts only
  std::vector<Mark> open_;
  std::vector<Interval> pending_;
  std::vector<Entry> entries_;
};

// begin(name, flops) now, end() at the end of the scope, when ctx has a profiler.
class ProfileScope {
 public:
  ProfileScope(Context& ctx, const char* name, double flops = 0) : p_(ctx.profiler()) {
    if (p_) p_->begin(name, flops);
  }
  ~ProfileScope() {
    if (p_) p_->end();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  Profiler* p_;
};

// Consecutive top-level intervals: next(name) ends the current one (if any) and begins `name`;
// the last ends with stop() or the destructor. For code that runs phase after phase.
class PhaseMarks {
 public:
  explicit PhaseMarks(Context& ctx) : p_(ctx.profiler()) {}
  ~PhaseMarks() { stop(); }
  PhaseMarks(const PhaseMarks&) = delete;
  PhaseMarks& operator=(const PhaseMarks&) = delete;
  void next(const char* name) {
    stop();
    if (p_) p_->begin(name, 0), open_ = true;
  }
  void stop() {
    if (p_ && open_) p_->end();
    open_ = false;
  }

 private:
  Profiler* p_;
  bool open_ = false;
};

CudaEvents* create_cuda_events();
void destroy_cuda_events(CudaEvents* e) noexcept;
int cuda_event_record(CudaEvents& e, const CudaHandles& h);  // records a free event; its index
float cuda_event_ms(CudaEvents& e, int start, int end);      // waits for `end`
void cuda_events_release(CudaEvents& e);                     // every event free again

}  // namespace u2pl
