"""The generator: tokenizer, Qwen2 model, trie-constrained beam search and progressive SFT.

tok = GenTokenizer.train(titles + queries, sid_vocab_sizes=(64, 64, 64, 8))
model = build_model(GeneratorConfig(), len(tok), tokenizer=tok)
train_sft(model, tok, item_examples(items, sids, tok), SFTConfig(stage="i2sid"), "models/sft/i2sid")
beams = beam_search(model, tok, trie, [tok.encode_prompt("red kettle")], beam_size=20)
"""

from genrecall.gen.beam import BeamResult, beam_search, reference_beam_search
from genrecall.gen.examples import (
    ExamplesConfig,
    SidDataset,
    UserContext,
    encode_user_query,
    item_examples,
    query_examples,
    user_contexts_from_log,
    user_query_examples,
)
from genrecall.gen.model import (
    GeneratorConfig,
    build_model,
    load_generator,
    load_pretrained,
    make_generator,
    save_generator,
)
from genrecall.gen.sft import STAGES, SFTConfig, SFTResult, train_progressive, train_sft
from genrecall.gen.tokenizer import GenTokenizer, TokenizerConfig

__all__ = [
    "STAGES",
    "BeamResult",
    "ExamplesConfig",
    "GenTokenizer",
    "GeneratorConfig",
    "SFTConfig",
    "SFTResult",
    "SidDataset",
    "TokenizerConfig",
    "UserContext",
    "beam_search",
    "build_model",
    "encode_user_query",
    "item_examples",
    "load_generator",
    "load_pretrained",
    "make_generator",
    "query_examples",
    "reference_beam_search",
    "save_generator",
    "train_progressive",
    "train_sft",
    "user_contexts_from_log",
    "user_query_examples",
]
