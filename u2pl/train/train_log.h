// The training log and progress display: one JSON object per line in <run dir>/log.jsonl (an
// "iter" record per logged step, a "val" record per validation), cut back to the resume point
// when a run resumes so no iteration appears twice, read back for the curves (u2pl/train/curves.h);
// and the console progress (a bar redrawn in place on a terminal, plain lines otherwise). Covered
// by tests/test_train_log.cpp.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/file_io.h"

namespace u2pl {

using NamedValues = std::vector<std::pair<std::string, double>>;

// {"type":"iter","iter":..,"epoch":..,"lr":..,"time":..,"it_s":..,<term>:..,...,"stats":{<stat>:..}}
// with the terms flat in their order (so `jq .loss` works) and the stats in their own object (so
// they read back apart from the terms). Non-finite values are written as null and read as NaN.
struct IterRecord {
  int64_t iter = 0;   // 0-based index of the iteration (poly_lr's `it`)
  int epoch = 0;      // 0-based
  double lr = 0;
  double time_s = 0;  // seconds of training (from this process's start or summed over resumes)
  double it_s = 0;    // iterations per second, recent
  NamedValues terms;  // loss terms in order: "loss", "sup", "unsup", "contra"
  NamedValues stats;  // "alpha_t", "ema", "thresh", "reliable", "queue_fill", ...
};

// {"type":"val","iter":..,"epoch":..,"model":..,"miou":..,"iou":[..],"classes":[..],
//  "pixel_acc":..,"mean_acc":..,"best":..}; scores are fractions in [0, 1] as in scores.json.
struct ValRecord {
  int64_t iter = 0;  // iterations done when validated (the index of the next iteration)
  int epoch = 0;
  std::string model;  // "teacher" | "student"
  double miou = 0;
  std::vector<double> iou;  // per class, in class order
  std::vector<std::string> classes;
  double pixel_acc = 0, mean_acc = 0;
  bool best = false;  // this validation set the run's best (its weights were saved as such)
};

struct LogRecords {
  std::vector<IterRecord> iters;
  std::vector<ValRecord> vals;
};

// Every record of a log, in file order. Blank lines are skipped, and so is a final line without
// its newline that does not parse (a write torn by a crash; logged). Any other line that is not
// valid JSON or not a well-formed record throws "<path>:<line>: ...".
LogRecords read_log(const std::string& path);

class TrainLog {
 public:
  // Opens `path` for appending, creating it. With `resume_iter` (the first iteration the resumed
  // run will log, that is the checkpoint's iterations done), first rewrites the file atomically
  // keeping the iter records with iter < *resume_iter and the val records with iter <=
  // *resume_iter (those the checkpoint has seen); 0 empties the log without reading it.
  explicit TrainLog(const std::string& path, std::optional<int64_t> resume_iter = std::nullopt);

  // One line each, appended whole (engine/file_io.h: a failed write leaves no part of it). Term
  // and stat names must be unique and must not be a record key
  // ("type", "iter", "epoch", "lr", "time", "it_s", "stats"); iou and classes must match in size.
  void write(const IterRecord& r);
  void write(const ValRecord& r);

  const std::string& path() const { return path_; }

 private:
  void write_line(const std::string& line);

  std::string path_;
  std::unique_ptr<LineFile> f_;
};

// Console progress of training. On a terminal one line redrawn in place:
//   epoch e/E it i/N [bar] ETA hh:mm:ss  x.xx it/s  lr ..  loss .. sup .. unsup .. contra ..
// (1-based e and i; cut to the terminal's width), ended with a newline at the last iteration.
// Otherwise the same text without the bar as a plain line at iteration first_iter, at every
// iteration i with i % every == 0 (1-based, so a resumed run prints where the original would),
// and at the last iteration. The rate shown and the ETA start from the first record's it_s, then
// follow the changes of iter and time_s between updates, smoothed over about 20 iterations.
class TrainProgress {
 public:
  // first_iter: the first iteration this process runs (0, or the resume point). every: the
  // plain-line cadence in iterations; 0 picks max(1, total_iters / 50).
  TrainProgress(std::FILE* out, bool terminal, int64_t total_iters, int64_t first_iter, int epochs,
                int64_t every = 0);

  void update(const IterRecord& r);
  // Prints `line` (no trailing newline) on its own line; on a terminal, clears the bar first and
  // redraws it after.
  void message(const std::string& line);

 private:
  std::string text(const IterRecord& r, bool bar) const;

  std::FILE* out_;
  bool terminal_;
  int64_t total_, first_, epochs_, every_;
  int width_;  // terminal columns, 0 when unknown
  bool seen_ = false;  // whether an update came before, with its iter and time_s
  int64_t last_iter_ = 0;
  double last_time_ = 0;
  double rate_ = 0;  // smoothed iterations per second, 0 until measured
  std::string shown_;  // the bar line on screen, empty when none
};

}  // namespace u2pl
