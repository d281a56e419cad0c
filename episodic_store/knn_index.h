#ifndef ENGRAM_EPISODIC_STORE_KNN_INDEX_H_
#define ENGRAM_EPISODIC_STORE_KNN_INDEX_H_

// Nearest-neighbour indices over a fixed set of slots 0 .. capacity - 1, each holding one
// float32 key of dimension D. Slots are filled in order (0, 1, ...) and later overwritten in
// place (an evicted key's slot takes the new key), so an index never deletes.
//
//   FlatIndex  exact: FAISS's brute-force L2 search (IndexFlatL2, keys stored contiguously;
//              batched queries go through BLAS).
//   IvfIndex   approximate (the default): an inverted file. k-means centroids (trained on
//              the keys once there are IvfOptions::train_at of them, retrained as they grow
//              or drift; exact scanning before that) split the keys into lists of about
//              list_size keys; a query scans the nprobe lists whose centroids are nearest.
//              Lists keep their keys in blocks of 16, scored with runtime-dispatched
//              AVX-512 / AVX2 code (8-bit codes with exact reranking were measured slower
//              at recall 0.95-0.97). A replaced key moves between lists in O(1).
//   HnswIndex  approximate: hnswlib's HNSW graph, which re-links a point whose vector is
//              replaced (FAISS's HNSW cannot change a stored vector in place).
//
// Distances are squared Euclidean. Not thread-safe for writes: the owner (Memory) locks;
// Search is const and may run concurrently with other Searches.

#include <cstdint>
#include <memory>

namespace engram::episodic {

class KnnIndex {
 public:
  virtual ~KnnIndex() = default;
  // Stores `key` (dim floats) in `slot`: slot == size() appends, slot < size() replaces.
  virtual void Set(int64_t slot, const float* key) = 0;
  // Finishes work Set may defer to do in bulk (IvfIndex assigns new keys to lists 64 at a
  // time); Search is right either way, and faster after it. The owner calls it after a
  // batch of Sets.
  virtual void Flush() {}
  // Slots in use.
  virtual int64_t size() const = 0;
  // For each of n queries, the k nearest slots by increasing distance: distances and
  // labels are [n, k]; missing neighbours (size() < k) get distance +inf and label -1.
  virtual void Search(const float* queries, int64_t n, int k, float* distances,
                      int64_t* labels) const = 0;
  // The stored key of a slot (dim floats).
  virtual const float* Key(int64_t slot) const = 0;
};

std::unique_ptr<KnnIndex> MakeFlatIndex(int dim, int64_t capacity);

// Defaults chosen with bench/episodic/episodic_index_bench (recall@50 >= 0.95 on projected
// observations at 20K-100K keys of dimension 64: M=32, ef=256 gives 0.97 at 100K keys, ef=128
// only 0.90; see the README's episodic store figures).
struct HnswOptions {
  int m = 32;                 // graph degree
  int ef_construction = 100;  // candidate list while inserting
  int ef_search = 256;        // candidate list while searching (raised to k when smaller)
};
std::unique_ptr<KnnIndex> MakeHnswIndex(int dim, int64_t capacity, const HnswOptions& options);

// Defaults chosen with bench/episodic/episodic_index_bench on projected MinAtar observations
// (recall@50 and speed at 100K keys of dimension 64; see the README's episodic store figures).
struct IvfOptions {
  int list_size = 256;         // keys per list (lists = planned size / list_size)
  int nprobe = 8;              // lists scanned per query
  int64_t train_at = 4096;     // keys before the first training (exact scanning until then)
  int kmeans_iterations = 10;  // Lloyd iterations per training
};
std::unique_ptr<KnnIndex> MakeIvfIndex(int dim, int64_t capacity, const IvfOptions& options);

// Which index INDEX_KIND_APPROXIMATE memories get, with its settings.
struct IndexOptions {
  enum class Approximate { kIvf, kHnsw };
  Approximate approximate = Approximate::kIvf;
  IvfOptions ivf;
  HnswOptions hnsw;
};

}  // namespace engram::episodic

#endif  // ENGRAM_EPISODIC_STORE_KNN_INDEX_H_
