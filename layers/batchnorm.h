// BatchNorm2d (eps 1e-5, momentum 0.1, affine, running statistics) with forward and backward
// in both modes. Must match torch.nn.BatchNorm2d in train() and eval(). "Use batch statistics"
// and "keep state for backward" are independent switches (STYLE 6). Tests:
// test_layers_grad.cpp, test_layers_fixtures.cpp, test_cuda_layers.cpp.
#pragma once
#include <string>

#include "engine/params.h"

namespace u2pl {

struct BatchNormMode {
  bool batch_stats = true;  // normalise with batch statistics and update the running ones
  bool keep_state = true;   // write mean and inverse std to `saved` for backward
};

constexpr float kBnEps = 1e-5f;
constexpr float kBnMomentum = 0.1f;

// CPU oracle. x, y (N,C,H,W); gamma, beta, run_mean, run_var (C); save_mean, save_invstd (C) or
// null. Batch statistics: biased variance to normalise, unbiased into running_var.
template <class T>
void batchnorm_forward_cpu(Shape xs, const T* x, const T* gamma, const T* beta, T* run_mean,
                           T* run_var, bool batch_stats, T* y, T* save_mean, T* save_invstd);
// dx = beta_dx*dx + dL/dx (dx may be null); dgamma, dbeta accumulate. batch_stats selects the
// train-mode gradient (through the batch mean and variance) or the eval-mode one.
template <class T>
void batchnorm_backward_cpu(Shape xs, const T* x, const T* gamma, const T* save_mean,
                            const T* save_invstd, bool batch_stats, const T* dy, T* dx, T beta_dx,
                            T* dgamma, T* dbeta);

void batchnorm_forward_cuda(Context& ctx, TensorView x, TensorView gamma, TensorView beta,
                            TensorView run_mean, TensorView run_var, bool batch_stats, TensorView y,
                            TensorView save_mean, TensorView save_invstd);
void batchnorm_backward_cuda(Context& ctx, TensorView x, TensorView gamma, TensorView save_mean,
                             TensorView save_invstd, bool batch_stats, TensorView dy, TensorView dx,
                             float beta_dx, TensorView dgamma, TensorView dbeta);

// y = BN(x) with the statistics of `stat` (2, C): row 0 mean, row 1 inverse std, as a forward
// saved them (the memory modes rebuild BN outputs in backward, bit for bit).
template <class T>
void batchnorm_apply_cpu(Shape xs, const T* x, const T* stat, const T* gamma, const T* beta, T* y);
void batchnorm_apply_cuda(Context& ctx, TensorView x, TensorView stat, TensorView gamma, TensorView beta,
                          TensorView y);

// SyncBN on CUDA (batch statistics): x holds sync.local replicas (equal slices, in order), the
// other processes' replicas come through sync.device_comm (null: this process holds them all);
// each replica's count, mean and squared deviations, and in backward its Σdy and Σdy·x̂, are
// merged in replica order, as the CPU path does (BatchNorm2d::forward with a ReplicaSync).
void batchnorm_forward_cuda_sync(Context& ctx, const ReplicaSync& sync, TensorView x, TensorView gamma,
                                 TensorView beta, TensorView run_mean, TensorView run_var, TensorView y,
                                 TensorView save_mean, TensorView save_invstd);
void batchnorm_backward_cuda_sync(Context& ctx, const ReplicaSync& sync, TensorView x, TensorView gamma,
                                  TensorView save_mean, TensorView save_invstd, TensorView dy, TensorView dx,
                                  float beta_dx, TensorView dgamma, TensorView dbeta);

// The layer: `<name>.weight` (ones), `<name>.bias` (zeros), buffers `<name>.running_mean`
// (zeros) and `<name>.running_var` (ones). `saved` is a (2, C) view of the state arena: row 0
// mean, row 1 inverse std; needed when mode.keep_state.
class BatchNorm2d {
 public:
  BatchNorm2d(ParamSet& ps, const std::string& name, int channels, int group = 0);
  int channels() const { return c_; }
  Shape saved_shape() const { return Shape{2, c_}; }
  void forward(Context& ctx, TensorView x, TensorView y, BatchNormMode mode, TensorView saved) const;
  void backward(Context& ctx, TensorView x, TensorView saved, bool batch_stats, TensorView dy,
                TensorView dx, float beta) const;
  // y = the output a forward with state `saved` gave for x, rebuilt from the saved mean and
  // inverse std (equal bit for bit; no statistics move).
  void rebuild(Context& ctx, TensorView x, TensorView saved, TensorView y) const;
  int weight_id() const { return w_; }
  int bias_id() const { return b_; }
  int mean_id() const { return rm_; }
  int var_id() const { return rv_; }

 private:
  ParamSet* ps_;
  int c_;
  int w_, b_, rm_, rv_;
};

}  // namespace u2pl
