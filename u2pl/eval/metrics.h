// Segmentation metrics over a whole split: a K-class confusion matrix (int64 counts, ignore_label
// skipped) and the scores the public U2PL code reports (intersectionAndUnion summed over the
// split): IoU_c = I / (U + 1e-10), mIoU over all K classes, pixel and mean accuracy (SPEC §5).
// Covered by tests/test_metrics.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace u2pl {

class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int num_classes, int ignore_label = 255);
  // Adds n pixels: pred (n) class indices in [0, K), label (n) in [0, K) or ignore_label. Any other
  // value throws, naming the pixel and the value; nothing is added then.
  void add(const int32_t* pred, const uint8_t* label, int64_t n);
  void add(const std::vector<int32_t>& pred, const std::vector<uint8_t>& label);
  void merge(const ConfusionMatrix& other);

  int num_classes() const { return k_; }
  int ignore_label() const { return ignore_; }
  int64_t at(int label, int pred) const { return m_[static_cast<size_t>(label) * k_ + pred]; }
  int64_t total() const;  // pixels counted (ignore excluded)
  // The (K, K) counts, row = label (summed across the processes of a sharded evaluation).
  int64_t* counts() { return m_.data(); }

 private:
  int k_;
  int ignore_;
  std::vector<int64_t> m_;  // (K, K) row = label, column = prediction
};

struct Scores {
  std::vector<double> iou;  // (K) I / (U + 1e-10): 0 for a class absent from labels and predictions
  std::vector<double> acc;  // (K) I / (label pixels + 1e-10): 0 for a class absent from the labels
  double miou = 0;          // mean of iou over all K classes
  double pixel_acc = 0;     // Σ I / (Σ pixels + 1e-10)
  double mean_acc = 0;      // mean of acc over all K classes
};

Scores score(const ConfusionMatrix& cm);

}  // namespace u2pl
