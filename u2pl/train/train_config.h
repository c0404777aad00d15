// The whole U2PL config.yaml for training (SPEC §3, §7, §8): dataset and net through their readers,
// trainer / saver / criterion here, the `paper` | `official` preset with its §7 switches, and
// `section.key=value` command-line overrides. Precedence: built-in defaults < preset < file <
// command line; values differing from the preset are logged with their source. Strict like the
// other readers. Covered by tests/test_train_config.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/data_config.h"
#include "u2pl/losses/contrastive.h"
#include "u2pl/losses/unsup_loss.h"
#include "u2pl/net/net_config.h"

namespace u2pl {

// The §7 switches that are not public keys, filled by the preset (paper value first, official
// second) and overridable by the key named on each line.
struct PresetSwitches {
  // trainer.unsupervised.scale_by_valid: L_u = mean CE (false) | × B·H·W / N_valid (true).
  bool scale_by_valid = false;
  // trainer.unsupervised.scale_mode: uniform in [lo, hi] (uniform) | two halves (two_halves).
  AugmentSpec::ScaleMode scale_mode = AugmentSpec::ScaleMode::Uniform;
  // trainer.unsupervised.label_pad: label value of padded pixels in crops and val images, 255 | 0.
  int label_pad = 255;
  // trainer.unsupervised.teacher_copy_bn: the teacher takes the student's BN running stats with its
  // parameters at the warm start's end (true) | parameters only (false).
  bool teacher_copy_bn = true;
  // trainer.contrastive.anchor_rule: anchors from reliable pixels (reliable) | lowest α_t % (lowest_alpha).
  LowMaskRule anchor_rule = LowMaskRule::Reliable;
  // trainer.contrastive.prototype_low_valid: prototype over A_c (false) | over low-valid pixels (true).
  bool prototype_low_valid = false;
  // trainer.contrastive.negatives_label_mask: Eq. 14-15 negatives (false) | label == c mask (true).
  bool negatives_label_mask = false;
  // trainer.contrastive.queue_index_bug: queue of the anchors' class (false) | valid_classes[i] (true).
  bool queue_index_bug = false;
  // trainer.contrastive.normalise_valid_classes: L_c over classes with anchors (false) | valid classes (true).
  bool normalise_valid_classes = false;
  // trainer.contrastive.divide_by_replicas: λc as given (false) | λc / R, the public code's
  // all-reduce of the loss divided by the GPU count (true).
  bool divide_by_replicas = false;
};

struct TrainConfig {
  std::string file;              // the config path
  std::string preset = "paper";  // trainer.preset: paper | official
  DataConfig data;
  NetConfig net;
  // trainer
  int epochs = 0;          // required
  int sup_only_epoch = 1;  // preset default: Cityscapes 20 (paper) / 0 (official), otherwise 1
  bool eval_on = true;
  int start_epochs = 0;    // public suponly key
  std::string device = "auto";  // trainer.device: cpu | cuda | auto
  uint64_t seed = 0;            // trainer.seed
  int eval_interval = 1;        // trainer.eval_interval: validate every n epochs
  bool deterministic = false;   // trainer.deterministic: deterministic CUDA algorithms (bit-exact resume on a GPU)
  // trainer.replicas R: the public code's GPU count, which fixes the math whatever runs it. Each
  // replica takes dataset.batch_size labeled and unlabeled images; BN statistics are over all
  // replicas, the losses per replica, the gradient their mean (SPEC §8).
  int replicas = 1;
  bool replicas_given = false;  // the config (or an override) set trainer.replicas
  // trainer.memory: what the student's train forward keeps for backward (u2pl/net/model.h's
  // MemoryMode): auto (the fastest mode that fits, chosen by check_runnable), keep, recompute_bn,
  // recompute_blocks.
  std::string memory = "auto";
  // trainer.conv_workspace_mib (ours): the most scratch memory, in MiB, cuDNN's convolution
  // algorithms may use (the losses' own CUDA scratch may exceed it); the memory figures count it.
  int conv_workspace_mib = int(kDefaultWorkspaceCap >> 20);
  float lr = 0.001f, momentum = 0, weight_decay = 0;  // optimizer SGD (PyTorch defaults for the last two)
  float lr_power = 0.9f;                             // lr_scheduler poly
  struct Unsup {
    bool enabled = false;  // trainer.unsupervised present
    float drop_percent = 80;
    std::string apply_aug = "cutmix";  // cutmix | none
    float loss_weight = 1;
    bool dpa = true;  // ours, trainer.unsupervised.dpa: False keeps α_t at α0 (no DPA ablation)
    // ours, trainer.unsupervised.score_pseudo_labels: a diagnostic that changes no number of the
    // training: the unlabeled images' own labels (which must exist) are loaded, mixed as the
    // pseudo-labels are, and the log's stats get the pseudo-labels' accuracy against them (all,
    // reliable, unreliable pixels).
    bool score_pseudo_labels = false;
  } unsup;
  struct Contrastive {
    bool enabled = false;  // trainer.contrastive present
    bool negative_high_entropy = true;
    int low_rank = 3, high_rank = 20;  // high_rank is clamped to net.num_classes (logged)
    float current_class_threshold = 0.3f, current_class_negative_threshold = 1;
    float low_entropy_threshold = 20;
    int num_negatives = 256, num_queries = 50;  // preset: paper (256, 50) / official (50, 256)
    float temperature = 0.5f;
    float loss_weight = 0.1f;  // preset: paper 0.1 / official 1
    bool binary = false, anchor_ema = false;
    int queue_size = 30000, queue_size_background = 50000;  // ours: memory bank capacity per class
    // ours, the paper's ablations (ContrastiveParams): trainer.contrastive.memory_bank,
    // trainer.contrastive.prt, trainer.contrastive.negative_source (unreliable | reliable | all)
    bool memory_bank = true, prt = true;
    NegativeSource negative_source = NegativeSource::Unreliable;
  } contrastive;
  PresetSwitches switches;
  // saver
  std::string snapshot_dir = "checkpoints", pretrain, run_dir;  // run_dir ours
  bool auto_resume = false;
  bool save_memory_bank = true;  // saver.save_memory_bank (ours): checkpoints hold the queues (exact resume)
  // criterion
  std::string criterion = "CELoss";  // CELoss | ohem
  bool use_weight = false;
  float ohem_thresh = 0.7f;
  int ohem_min_kept = 100000;

  ContrastiveParams contrastive_params() const;  // M, N, thresholds and the §7 switches
  UnsupOptions unsup_options(double percent) const;
  // α_t of SPEC §2.2 at `epoch` (0-based, at most epochs) from α0: α0·(1 − epoch / epochs), or α0
  // at every epoch when unsup.dpa is off.
  double alpha_at(double alpha0, int epoch) const;
  // The percentile L_u drops at, 100 − α_t with α0 = 100 − drop_percent (UnsupOptions::percent).
  double unsup_percent_at(int epoch) const;
  // α_t of the contrastive entropy masks, α0 = low_entropy_threshold (contrastive_masks).
  double contrastive_alpha_at(int epoch) const;
  // The weight each replica's contrastive loss enters the (replica-mean) loss with: loss_weight,
  // divided by the replica count under switches.divide_by_replicas.
  double contrastive_weight() const;
  // Images of each kind (labeled, unlabeled) one iteration takes: replicas · batch_size.
  int global_batch() const { return replicas * data.batch_size; }
};

// Loads `path`, applies `overrides` ("section.key=value", the value a YAML scalar or flow
// sequence) and validates. Warnings and the values that differ from the preset go to *log.
// Errors name the file:line and dotted key; those an override causes say "command line".
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides,
                              std::vector<std::string>* log);

// The same over YAML text (a built-in recipe); errors name `name` where they would name the file.
TrainConfig load_train_config_text(const std::string& text, const std::string& name,
                                   const std::vector<std::string>& overrides, std::vector<std::string>* log);

// The resolved config as YAML text that load_train_config reads back to the same values.
std::string resolved_yaml(const TrainConfig& c);

}  // namespace u2pl
