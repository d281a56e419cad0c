#ifndef ENGRAM_EPISODIC_STORE_KNN_INDEX_H_
#define ENGRAM_EPISODIC_STORE_KNN_INDEX_H_

// Nearest-neighbour indices over a fixed set of slots 0 .. capacity - 1, each holding one
// float32 key of dimension D. Slots are filled in order (0, 1, ...) and later overwritten in
// place (an evicted key's slot takes the new key), so an index never deletes.
//
//   FlatIndex  exact: FAISS's brute-force L2 search (IndexFlatL2, keys stored contiguously;
//              batched queries go through BLAS).
//   HnswIndex  approximate: hnswlib's HNSW graph, which re-links a point whose vector is
//              replaced (FAISS's HNSW cannot change a stored vector in place).
//
// Distances are squared Euclidean. Not thread-safe: the owner (Memory) locks.

#include <cstdint>
#include <memory>

namespace engram::episodic {

class KnnIndex {
 public:
  virtual ~KnnIndex() = default;
  // Stores `key` (dim floats) in `slot`: slot == size() appends, slot < size() replaces.
  virtual void Set(int64_t slot, const float* key) = 0;
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

}  // namespace engram::episodic

#endif  // ENGRAM_EPISODIC_STORE_KNN_INDEX_H_
