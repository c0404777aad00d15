// Comm over MPI and alone (engine/comm.h). Only the main thread calls MPI (MPI_THREAD_FUNNELED);
// counts beyond an int go in chunks.
#include "engine/comm.h"

#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "engine/check.h"

namespace u2pl {

namespace {

void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  U2PL_FAIL("MPI: " << what << " failed: " << std::string(text, size_t(len)));
}

constexpr int64_t kChunk = int64_t(1) << 30;  // elements per MPI call: an int count

class MpiComm final : public Comm {
 public:
  MpiComm() {
    int provided = 0;
    mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    U2PL_CHECK(provided >= MPI_THREAD_FUNNELED, "MPI: the library offers no MPI_THREAD_FUNNELED support");
    mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
    mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_),
              "MPI_Comm_split_type");
    mpi_check(MPI_Comm_rank(node_, &local_rank_), "MPI_Comm_rank (node)");
    mpi_check(MPI_Comm_size(node_, &local_size_), "MPI_Comm_size (node)");
  }
  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Comm_free(&node_);
    MPI_Finalize();
  }

  void allreduce_sum(float* d, int64_t n) override { reduce(d, n, MPI_FLOAT); }
  void allreduce_sum(double* d, int64_t n) override { reduce(d, n, MPI_DOUBLE); }
  void allreduce_sum(int64_t* d, int64_t n) override { reduce(d, n, MPI_INT64_T); }

  void allgather(const void* mine, size_t bytes, void* all) override {
    U2PL_CHECK(bytes <= size_t(INT_MAX), "MPI: an all-gather of " << bytes << " bytes per process is too large");
    bytes_sent_ += int64_t(bytes);
    mpi_check(MPI_Allgather(mine, int(bytes), MPI_BYTE, all, int(bytes), MPI_BYTE, MPI_COMM_WORLD), "MPI_Allgather");
  }

  void broadcast(void* data, size_t bytes, int root) override {
    char* p = static_cast<char*>(data);
    if (rank_ == root) bytes_sent_ += int64_t(bytes);
    for (size_t done = 0; done < bytes;) {
      const size_t n = std::min(bytes - done, size_t(kChunk));
      mpi_check(MPI_Bcast(p + done, int(n), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
      done += n;
    }
  }

  void start_allreduce_sum(float* d, int64_t n) override {
    bytes_sent_ += n * int64_t(sizeof(float));
    for (int64_t done = 0; done < n;) {
      const int64_t k = std::min(n - done, kChunk);
      pending_.emplace_back();
      mpi_check(MPI_Iallreduce(MPI_IN_PLACE, d + done, int(k), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &pending_.back()),
                "MPI_Iallreduce");
      done += k;
    }
  }

  void progress() override {
    if (pending_.empty()) return;
    int all_done = 0;
    mpi_check(MPI_Testall(int(pending_.size()), pending_.data(), &all_done, MPI_STATUSES_IGNORE), "MPI_Testall");
    if (all_done) pending_.clear();
  }

  void wait_all() override {
    if (pending_.empty()) return;
    mpi_check(MPI_Waitall(int(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    pending_.clear();
  }

  void barrier() override { mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; should it, end this process all the same
  }

  std::vector<char> allgatherv(const void* mine, size_t bytes) override {
    const std::vector<int64_t> sizes = gather_all(int64_t(bytes));
    std::vector<int> counts, displs;
    int64_t total = 0;
    for (const int64_t s : sizes) {
      counts.push_back(int(s));
      displs.push_back(int(total));
      total += s;
    }
    U2PL_CHECK(total <= INT_MAX, "MPI: an all-gather of " << total << " bytes in all is too large");
    std::vector<char> all(static_cast<size_t>(total));
    bytes_sent_ += int64_t(bytes);
    mpi_check(MPI_Allgatherv(mine, int(bytes), MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE,
                             MPI_COMM_WORLD),
              "MPI_Allgatherv");
    return all;
  }

 private:
  template <class T>
  void reduce(T* d, int64_t n, MPI_Datatype type) {
    bytes_sent_ += n * int64_t(sizeof(T));
    for (int64_t done = 0; done < n;) {
      const int64_t k = std::min(n - done, kChunk);
      mpi_check(MPI_Allreduce(MPI_IN_PLACE, d + done, int(k), type, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
      done += k;
    }
  }

  MPI_Comm node_ = MPI_COMM_NULL;
  std::vector<MPI_Request> pending_;  // started sums (MPI_REQUEST_NULL once complete)
};

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

}  // namespace

std::vector<char> SelfComm::allgatherv(const void* mine, size_t bytes) {
  const char* p = static_cast<const char*>(mine);
  return std::vector<char>(p, p + bytes);
}

void SelfComm::allgather(const void* mine, size_t bytes, void* all) {
  if (bytes > 0) std::memmove(all, mine, bytes);
}

void SelfComm::abort(int code) { std::_Exit(code); }

bool launched_by_mpi() {
  return env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMIX_RANK") || env_set("PMI_SIZE");
}

namespace {
std::unique_ptr<Comm>& world_slot() {
  static std::unique_ptr<Comm> w;
  return w;
}
}  // namespace

Comm& world() {
  std::unique_ptr<Comm>& w = world_slot();
  if (!w) w = launched_by_mpi() ? std::unique_ptr<Comm>(new MpiComm) : std::unique_ptr<Comm>(new SelfComm);
  return *w;
}

Comm* started_world() { return world_slot().get(); }

void finalize_world() { world_slot().reset(); }

Comm& self_comm() {
  static SelfComm s;
  return s;
}

std::string rank_prefix(const Comm& c) {
  if (c.size() == 1) return "";
  return "rank " + std::to_string(c.rank()) + " of " + std::to_string(c.size()) + ": ";
}

}  // namespace u2pl
