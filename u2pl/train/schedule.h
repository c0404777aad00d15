// The schedules and draws of U2PL training (SPEC §2.2, §3): poly learning rate, the EMA decay,
// the dynamic partition α_t, and CutMix boxes with the public code's numpy semantics (randint
// draws from [a, b) with a float bound truncated; round half to even). Draws come from the
// engine's Philox RNG. Covered by tests/test_schedule.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/rng.h"
#include "layers/mix.h"

namespace u2pl {

// base · (1 − it / max_it)^power, stepped before each iteration (it from 0).
double poly_lr(double base, int64_t it, int64_t max_it, double power);

// ema = min(1 − 1/(k + 1), cap) with k counted from the first iteration of epoch sup_only_epoch.
float ema_decay(int64_t k, float cap);

// α_t = α0 (1 − epoch / epochs), per integer epoch from 0 (percent, e.g. 20 → 20 %).
double alpha_t(double alpha0, int epoch, int epochs);

// numpy.random.randint(low, high): uniform in [trunc(low), trunc(high)); needs high > low.
int64_t np_randint(Rng& rng, double low, double high);

// One CutMix box for an H×W image (public generate_cutout_mask, ratio 2): w = randint(W/2 + 1, W),
// h = round(H·W/2 / w), x0 = randint(0, W − w + 1), y0 = randint(0, H − h + 1).
Box cutmix_box(Rng& rng, int H, int W);
std::vector<Box> cutmix_boxes(Rng& rng, int batch, int H, int W);

}  // namespace u2pl
