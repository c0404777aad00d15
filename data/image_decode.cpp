// Image decoding (data/image_io.h): PNG through libpng and JPEG through libjpeg-turbo, the decoders
// PIL uses, so the pixels are those the public code's Image.open(...).convert("RGB") sees. Both
// libraries report errors by longjmp: each setjmp sits in a function whose frame holds no object
// with a destructor, and the message comes back to C++ code that throws. libpng's warnings (about
// ancillary chunks) are ignored. libjpeg's warnings are too, as PIL ignores them (extraneous bytes
// before a marker, say), but for the two that mean image data is missing, which libjpeg would fill
// in with grey: the file ends early (PIL: "image file is truncated") or a marker cuts a scan short.
// Covered by tests/test_dataset.cpp and the fuzz target fuzz/fuzz_image.cpp.
#include <algorithm>
#include <csetjmp>
#include <cstdio>  // before jpeglib.h, which needs FILE and size_t declared
#include <cstring>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>  // after jpeglib.h
#include <png.h>

#include "data/image_io.h"
#include "engine/check.h"

namespace u2pl {
namespace {

enum class Format { Png, Jpeg };

// The decoders' error message, filled before the longjmp back to the setjmp.
struct DecodeError {
  char message[JMSG_LENGTH_MAX + 64] = {0};
};

// An open file that closes itself.
class File {
 public:
  explicit File(const std::string& path) : f_(std::fopen(path.c_str(), "rb")) {
    U2PL_CHECK(f_ != nullptr, path << ": cannot open (missing or unreadable)");
  }
  ~File() { std::fclose(f_); }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  std::FILE* get() const { return f_; }

 private:
  std::FILE* f_;
};

Format sniff(std::FILE* f, const std::string& path) {
  unsigned char head[8] = {0};
  const size_t n = std::fread(head, 1, sizeof head, f);
  std::rewind(f);
  if (n == 8 && png_sig_cmp(head, 0, 8) == 0) return Format::Png;
  if (n >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) return Format::Jpeg;
  throw Error(path + ": not a PNG or JPEG file (" + (n < 3 ? "too short" : "unknown signature") + ")");
}

// Decoded images larger than this are refused before any pixel memory is taken: 2^27 pixels (over
// 11000 x 11000), far beyond any segmentation dataset, and a header cannot make us allocate more.
constexpr uint64_t kMaxPixels = uint64_t(1) << 27;

void check_size(const std::string& path, uint64_t width, uint64_t height) {
  U2PL_CHECK(width > 0 && height > 0, path << ": the header gives an empty image (" << width << "x" << height << ")");
  U2PL_CHECK(width * height <= kMaxPixels, path << ": " << width << "x" << height << " is over the " << kMaxPixels
                                                << " pixels an image may have");
}

// ---- PNG

void png_fail(png_structp png, png_const_charp msg) {
  auto* e = static_cast<DecodeError*>(png_get_error_ptr(png));
  std::snprintf(e->message, sizeof e->message, "%s", msg);
  png_longjmp(png, 1);
}
void png_ignore(png_structp, png_const_charp) {}

// The PNG header (decode false) or the whole image (decode true). The header: size, stored
// channels (a palette counts as RGB, or RGBA with transparency, as PIL and stb report it) and bit
// depth. Decoding fills out->pixels (sized by the caller from the header, `want` channels): 16-bit
// samples keep their high byte (as PIL reads 16-bit RGB; PIL clips 16-bit grey at 255 instead, a
// form no dataset uses), alpha is dropped (not composited), a palette and grey are expanded to RGB
// for want 3, grey of 1, 2 or 4 bits is scaled to 8; want 1 takes single-channel files only (the
// caller checks). Returns false with e->message set on error.
bool png_read(std::FILE* f, bool decode, int want, ImageHeader* h, Image* out, std::vector<png_bytep>* rows,
              DecodeError* e) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, e, png_fail, png_ignore);
  if (!png) return std::snprintf(e->message, sizeof e->message, "out of memory"), false;
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return std::snprintf(e->message, sizeof e->message, "out of memory"), false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_init_io(png, f);
  png_read_info(png, info);
  h->width = static_cast<int>(png_get_image_width(png, info));
  h->height = static_cast<int>(png_get_image_height(png, info));
  h->bits16 = png_get_bit_depth(png, info) == 16;
  const int type = png_get_color_type(png, info);
  const bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
  h->channels = type == PNG_COLOR_TYPE_PALETTE ? (trns ? 4 : 3) : png_get_channels(png, info);
  if (decode) {
    if (h->width != out->width || h->height != out->height) png_error(png, "the header changed between reads");
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    png_set_packing(png);
    png_set_expand_gray_1_2_4_to_8(png);
    png_set_palette_to_rgb(png);
    if (want == 3) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != want || png_get_rowbytes(png, info) != size_t(out->width) * want)
      png_error(png, "unexpected channel count after conversion");
    for (int y = 0; y < out->height; ++y) (*rows)[size_t(y)] = out->pixels.data() + size_t(y) * out->width * want;
    png_read_image(png, rows->data());
    png_read_end(png, nullptr);
  }
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

// ---- JPEG

struct JpegErrors {
  jpeg_error_mgr mgr;  // first: libjpeg's pointer to it is a pointer to this
  DecodeError* error;
  std::jmp_buf jump;
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* j = reinterpret_cast<JpegErrors*>(cinfo->err);
  char msg[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, msg);
  std::snprintf(j->error->message, sizeof j->error->message, "%s", msg);
  std::longjmp(j->jump, 1);
}
// Warnings (level -1) that mean missing image data stop the decode; the others are ignored.
void jpeg_message(j_common_ptr cinfo, int level) {
  const int code = cinfo->err->msg_code;
  if (level < 0 && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER)) jpeg_fail(cinfo);
}

// A CMYK pixel as PIL's convert("RGB") gives it (Convert.c cmyk2rgb): R = (255 − K) − C·(255 − K)/255
// rounded as its MULDIV255, likewise G from M and B from Y. Files with an Adobe marker store the
// values inverted (Photoshop's convention, PIL's rawmode "CMYK;I"), and are inverted back first.
void cmyk_to_rgb(const uint8_t* cmyk, int width, bool inverted, uint8_t* rgb) {
  for (int x = 0; x < width; ++x, cmyk += 4, rgb += 3) {
    const int nk = inverted ? cmyk[3] : 255 - cmyk[3];
    for (int c = 0; c < 3; ++c) {
      const int v = inverted ? 255 - cmyk[c] : cmyk[c];
      const int t = v * nk + 128;
      rgb[c] = static_cast<uint8_t>(std::max(0, nk - (((t >> 8) + t) >> 8)));
    }
  }
}

// The state of one libjpeg read, owned by the caller: the frame that calls setjmp changes none of
// its own locals after it.
struct JpegRead {
  jpeg_decompress_struct cinfo;
  JpegErrors err;
};

// The JPEG header (decode false) or the whole image (decode true, into out->pixels sized by the
// caller, `want` channels; want 1 takes single-component files only, the caller checks). CMYK and
// YCCK files decode through `row4` (the caller's, 4 bytes a pixel) and cmyk_to_rgb.
bool jpeg_read(std::FILE* f, bool decode, int want, ImageHeader* h, Image* out, std::vector<uint8_t>* row4,
               JpegRead* j, DecodeError* e) {
  jpeg_decompress_struct& cinfo = j->cinfo;
  cinfo.err = jpeg_std_error(&j->err.mgr);
  j->err.mgr.error_exit = jpeg_fail;
  j->err.mgr.emit_message = jpeg_message;
  j->err.error = e;
  if (setjmp(j->err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  h->width = static_cast<int>(cinfo.image_width);
  h->height = static_cast<int>(cinfo.image_height);
  h->channels = cinfo.num_components;
  h->bits16 = false;
  if (decode) {
    if (static_cast<int>(cinfo.image_width) != out->width || static_cast<int>(cinfo.image_height) != out->height) {
      std::snprintf(e->message, sizeof e->message, "the header changed between reads");
      std::longjmp(j->err.jump, 1);
    }
    const bool cmyk = want == 3 && (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK);
    cinfo.out_color_space = cmyk ? JCS_CMYK : want == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != (cmyk ? 4 : want) || (cmyk && row4->size() != size_t(out->width) * 4)) {
      std::snprintf(e->message, sizeof e->message, "unexpected channel count after conversion");
      std::longjmp(j->err.jump, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
      uint8_t* dst = out->pixels.data() + size_t(cinfo.output_scanline) * out->width * want;
      JSAMPROW row = cmyk ? row4->data() : dst;
      jpeg_read_scanlines(&cinfo, &row, 1);
      if (cmyk) cmyk_to_rgb(row4->data(), out->width, cinfo.saw_Adobe_marker, dst);
    }
    jpeg_finish_decompress(&cinfo);
  }
  jpeg_destroy_decompress(&cinfo);
  return true;
}

ImageHeader header_of(std::FILE* f, const std::string& path, Format fmt) {
  ImageHeader h;
  DecodeError e;
  JpegRead j;
  const bool ok = fmt == Format::Png ? png_read(f, false, 0, &h, nullptr, nullptr, &e)
                                     : jpeg_read(f, false, 0, &h, nullptr, nullptr, &j, &e);
  U2PL_CHECK(ok, path << ": not a readable " << (fmt == Format::Png ? "PNG" : "JPEG") << " (" << e.message << ")");
  check_size(path, uint64_t(h.width), uint64_t(h.height));
  std::rewind(f);
  return h;
}

}  // namespace

ImageHeader read_image_header(const std::string& path) {
  const File f(path);
  return header_of(f.get(), path, sniff(f.get(), path));
}

Image read_image(const std::string& path, int want_channels) {
  U2PL_CHECK(want_channels == 1 || want_channels == 3, path << ": read_image: channels must be 1 or 3");
  const File f(path);
  const Format fmt = sniff(f.get(), path);
  const ImageHeader h = header_of(f.get(), path, fmt);
  U2PL_CHECK(want_channels == 3 || h.channels == 1,
             path << ": expected a single-channel image, got " << h.channels << " channels");
  Image img{h.width, h.height, want_channels, std::vector<uint8_t>(size_t(h.width) * h.height * want_channels)};
  DecodeError e;
  ImageHeader again;
  bool ok = false;
  if (fmt == Format::Png) {
    std::vector<png_bytep> rows(size_t(h.height));
    ok = png_read(f.get(), true, want_channels, &again, &img, &rows, &e);
  } else {
    std::vector<uint8_t> row4(size_t(h.width) * 4);
    JpegRead j;
    ok = jpeg_read(f.get(), true, want_channels, &again, &img, &row4, &j, &e);
  }
  U2PL_CHECK(ok, path << ": cannot decode the " << (fmt == Format::Png ? "PNG" : "JPEG") << " (" << e.message << ")");
  return img;
}

}  // namespace u2pl
