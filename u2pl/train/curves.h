// Training curves as one self-contained SVG (no external fonts, styles or scripts), drawn from the
// records of the training log (u2pl/train/train_log.h). Covered by tests/test_train_log.cpp.
#pragma once
#include <string>
#include <vector>

#include "u2pl/train/train_log.h"

namespace u2pl {

// Two panels over a shared iteration axis, with grid lines, tick labels (1/2/5 × 10^k) and
// legends. Top: each loss term, raw as a thin faint line (at most 2000 points per series: the
// minimum and maximum of each of 1000 buckets, so spikes survive) and a centred moving average
// over max(1, n / 100) points as a solid line; the y axis is log10 when no value is negative and
// the positive ones span a decade or more (zeros, e.g. the unsupervised terms before the warm
// start ends, are then neither drawn nor averaged), linear otherwise. Bottom: validation mIoU
// (percent) per model name in order of appearance, points and lines, the last validation flagged
// `best` (the run's best) ringed and quoted in the legend. A third panel once the log has
// pseudo-labels (past the warm start of a run with a teacher): the reliable share and, where the
// run scores them (trainer.unsupervised.score_pseudo_labels), the share that is right (all,
// reliable, unreliable) and of unreliable pixels whose own class is among their negatives, in
// percent of the unlabeled pixels, raw and as moving means. NaN values are skipped; a
// series of one point is drawn as a dot; a panel without data shows a message instead.
std::string curves_svg(const std::vector<IterRecord>& iters, const std::vector<ValRecord>& vals,
                       const std::string& title);
// curves_svg written atomically (write_file_atomic).
void write_curves_svg(const std::string& path, const std::vector<IterRecord>& iters,
                      const std::vector<ValRecord>& vals, const std::string& title);

}  // namespace u2pl
