// Tests of the file writes a run must not lose (engine/file_io.h) with the failures a test can
// cause itself as root (which ignores file permissions): the file size limit (RLIMIT_FSIZE), a
// folder that is gone, a path that is a directory, a file removed while it is appended to.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "engine/file_io.h"
#include "tests/file_limit.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"

using namespace u2pl;
using u2pl::test::error_of;
using u2pl::test::FileSizeLimit;
using u2pl::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("write_file_atomic: the new file whole, or on failure the old one and no temporary file") {
  TempDir dir("file_io_atomic");
  const std::string p = dir.path + "/a.bin";
  write_file_atomic(p, "first");
  const std::string a = "0123", b = "456789";
  write_file_atomic(p, {{a.data(), a.size()}, {b.data(), b.size()}});
  CHECK(slurp(p) == "0123456789");
  {
    FileSizeLimit limit(4096);
    const std::string e = error_of([&] { write_file_atomic(p, std::string(10000, 'x')); });
    CHECK_MESSAGE(e.find(p + ": cannot write: File too large") != std::string::npos, e);
    CHECK_MESSAGE(e.find("the previous file, if any, is unchanged") != std::string::npos, e);
  }
  CHECK(slurp(p) == "0123456789");
  CHECK_FALSE(fs::exists(p + ".tmp"));
  // A folder that is gone; a path that is a directory.
  const std::string gone = error_of([&] { write_file_atomic(dir.path + "/none/b.bin", "x"); });
  CHECK_MESSAGE(gone.find(dir.path + "/none/b.bin.tmp: cannot create the temporary file") != std::string::npos, gone);
  CHECK_MESSAGE(gone.find("No such file or directory") != std::string::npos, gone);
  fs::create_directories(dir.path + "/ckpt");
  fs::create_directories(dir.path + "/ckpt/inner");  // not empty: rename cannot replace it
  const std::string isdir = error_of([&] { write_file_atomic(dir.path + "/ckpt", "x"); });
  CHECK_MESSAGE(isdir.find(dir.path + "/ckpt: cannot put the new file in place: Is a directory") != std::string::npos,
                isdir);
  CHECK(fs::is_directory(dir.path + "/ckpt/inner"));
  CHECK_FALSE(fs::exists(dir.path + "/ckpt.tmp"));
  // A link is not replaced by a file (as root, /dev/stdout would be).
  fs::create_symlink(p, dir.path + "/link");
  const std::string link = error_of([&] { write_file_atomic(dir.path + "/link", "x"); });
  CHECK_MESSAGE(link.find(dir.path + "/link: not a regular file") != std::string::npos, link);
  CHECK(fs::is_symlink(dir.path + "/link"));
  CHECK(slurp(p) == "0123456789");
}

TEST_CASE("FolderLock: one holder at a time; released with its object") {
  TempDir dir("file_io_lock");
  {
    FolderLock a(dir.path);
    const std::string e = error_of([&] { FolderLock b(dir.path); });
    CHECK_MESSAGE(e.find(dir.path + ": in use by another process (it holds " + dir.path + "/.lock)") !=
                      std::string::npos,
                  e);
  }
  FolderLock again(dir.path);
  CHECK(error_of([&] { FolderLock none(dir.path + "/none"); }).find("cannot open the folder's lock") !=
        std::string::npos);
}

TEST_CASE("LineFile: whole lines; a failed append is cut off again; a removed file is an error") {
  TempDir dir("file_io_lines");
  const std::string p = dir.path + "/log.jsonl";
  {
    LineFile f(p, true);
    f.append("{\"a\":1}");
    f.append("{\"b\":2}");
  }
  CHECK(slurp(p) == "{\"a\":1}\n{\"b\":2}\n");
  {
    LineFile f(p, false);  // appends
    FileSizeLimit limit(20);
    const std::string e = error_of([&] { f.append(std::string(30, 'y')); });  // 4 bytes fit, then EFBIG
    CHECK_MESSAGE(e.find(p + ": cannot append a line: File too large (the file keeps its whole lines)") !=
                      std::string::npos,
                  e);
  }
  CHECK(slurp(p) == "{\"a\":1}\n{\"b\":2}\n");
  {
    LineFile f(p, true);
    f.append("x");
    fs::remove(p);
    const std::string e = error_of([&] { f.append("y"); });
    CHECK_MESSAGE(e.find(p + ": the file was removed while this run wrote it") != std::string::npos, e);
  }
  const std::string e = error_of([&] { LineFile f(dir.path + "/none/log.jsonl", false); });
  CHECK_MESSAGE(e.find("cannot open for appending: No such file or directory") != std::string::npos, e);
  CHECK(free_bytes(dir.path) > 0);
  CHECK(free_bytes(dir.path + "/none") == -1);
}
