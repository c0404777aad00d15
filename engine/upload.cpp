// Uploader (engine/upload.h): the device-independent part; the CUDA work is in
// engine/cuda/upload.cu.
#include "engine/upload.h"

namespace u2pl {

Uploader::Uploader(Context& ctx, int slots) : ctx_(ctx), slots_(slots) {
  U2PL_CHECK(slots >= 1, "uploader: at least one slot, got " << slots);
  if (ctx.device() == Device::CUDA) cuda_ = create_cuda_uploads(ctx.cuda(), slots);
}

Uploader::~Uploader() { destroy_cuda_uploads(cuda_); }

void Uploader::ready(int slot) {
  U2PL_CHECK(slot >= 0 && slot < slots_, "uploader: slot " << slot << " of " << slots_);
  if (cuda_) cuda_upload_ready(*cuda_, ctx_.cuda(), slot);
}

void Uploader::done(int slot) {
  U2PL_CHECK(slot >= 0 && slot < slots_, "uploader: slot " << slot << " of " << slots_);
  if (cuda_) cuda_upload_done(*cuda_, ctx_.cuda(), slot);
}

void* Uploader::upload_bytes(const void* src, size_t bytes, int slot, int part) {
  U2PL_CHECK(slot >= 0 && slot < slots_, "uploader: slot " << slot << " of " << slots_);
  U2PL_CHECK(part >= 0 && part < 16, "uploader: part " << part << " outside [0, 16)");
  return cuda_upload(*cuda_, ctx_, src, bytes, slot, part);
}

}  // namespace u2pl
