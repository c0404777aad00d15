// Confusion matrix and scores (u2pl/eval/metrics.h). The 1e-10 guards are the public code's
// (u2pl/utils/utils.py intersectionAndUnion, then iou = I / (U + 1e-10)): classes with no pixels
// score 0, never NaN.
#include "u2pl/eval/metrics.h"

#include "engine/check.h"

namespace u2pl {

namespace {
constexpr double kEps = 1e-10;  // the public code's guard against empty classes
}

ConfusionMatrix::ConfusionMatrix(int num_classes, int ignore_label)
    : k_(num_classes), ignore_(ignore_label) {
  U2PL_CHECK(num_classes >= 1, "confusion matrix: expected at least one class, got " << num_classes);
  U2PL_CHECK(ignore_label < 0 || ignore_label >= num_classes,
             "confusion matrix: ignore_label " << ignore_label << " is a class index (K = " << num_classes << ")");
  m_.assign(static_cast<size_t>(k_) * k_, 0);
}

void ConfusionMatrix::add(const int32_t* pred, const uint8_t* label, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const int l = label[i];
    U2PL_CHECK(l == ignore_ || l < k_, "label " << l << " at pixel " << i << " is neither a class in [0, "
                                                << k_ << ") nor the ignore label " << ignore_);
    U2PL_CHECK(pred[i] >= 0 && pred[i] < k_,
               "prediction " << pred[i] << " at pixel " << i << " is not a class in [0, " << k_ << ")");
  }
  for (int64_t i = 0; i < n; ++i)
    if (label[i] != ignore_) ++m_[static_cast<size_t>(label[i]) * k_ + pred[i]];
}

void ConfusionMatrix::add(const std::vector<int32_t>& pred, const std::vector<uint8_t>& label) {
  U2PL_CHECK(pred.size() == label.size(),
             "confusion matrix: " << pred.size() << " predicted pixels for " << label.size() << " labels");
  add(pred.data(), label.data(), static_cast<int64_t>(pred.size()));
}

void ConfusionMatrix::merge(const ConfusionMatrix& other) {
  U2PL_CHECK(other.k_ == k_ && other.ignore_ == ignore_,
             "confusion matrix: cannot merge K = " << other.k_ << " into K = " << k_);
  for (size_t i = 0; i < m_.size(); ++i) m_[i] += other.m_[i];
}

int64_t ConfusionMatrix::total() const {
  int64_t t = 0;
  for (int64_t v : m_) t += v;
  return t;
}

Scores score(const ConfusionMatrix& cm) {
  const int K = cm.num_classes();
  Scores s;
  s.iou.resize(K);
  s.acc.resize(K);
  double diag = 0;
  for (int c = 0; c < K; ++c) {
    double row = 0, col = 0;
    for (int j = 0; j < K; ++j) row += static_cast<double>(cm.at(c, j)), col += static_cast<double>(cm.at(j, c));
    const double inter = static_cast<double>(cm.at(c, c));
    s.iou[c] = inter / (row + col - inter + kEps);
    s.acc[c] = inter / (row + kEps);
    s.miou += s.iou[c];
    s.mean_acc += s.acc[c];
    diag += inter;
  }
  s.miou /= K;
  s.mean_acc /= K;
  s.pixel_acc = diag / (static_cast<double>(cm.total()) + kEps);
  return s;
}

}  // namespace u2pl
