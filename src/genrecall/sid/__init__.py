"""Item tokenization: text embeddings -> CQ-SID (or the RQ-VAE baseline) -> SIDs, index and trie.

The pieces, in the order data flows through them:

- ``encoder``: text encoders (MiniLM offline, or a hashed n-gram encoder for tests) + embedding cache.
- ``rqvae``: the RQ-VAE model (EMA codebooks, k-means init, dead-code restart, forced level 1).
- ``tokenizer``: ``SidTokenizer.fit`` / ``assign`` for ``cq_sid`` and ``rq_vae``.
- ``clusters``: the suffix position (cluster groups for CQ-SID, dedup for the baseline).
- ``index``: ``SidIndex`` (SID <-> items, kept in sync with ``trie.SidTrie``).
- ``health``: per-level utilisation, entropy, cluster sizes, category match; the size plot.
"""

from genrecall.sid.clusters import ClusterConfig, dedup_suffix, make_sids, split_clusters, with_suffix
from genrecall.sid.encoder import EmbeddingCache, EncoderConfig, HashEncoder, make_encoder
from genrecall.sid.health import SidHealth, plot_cluster_sizes, sid_health
from genrecall.sid.index import SidIndex
from genrecall.sid.tokenizer import FitReport, QueryPairs, SidTokenizer, SidTokenizerConfig
from genrecall.sid.trie import SidTrie

__all__ = [
    "ClusterConfig",
    "EmbeddingCache",
    "EncoderConfig",
    "FitReport",
    "HashEncoder",
    "QueryPairs",
    "SidHealth",
    "SidIndex",
    "SidTokenizer",
    "SidTokenizerConfig",
    "SidTrie",
    "dedup_suffix",
    "make_encoder",
    "make_sids",
    "plot_cluster_sizes",
    "sid_health",
    "split_clusters",
    "with_suffix",
]
