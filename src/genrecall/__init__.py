"""genrecall: generative recall for e-commerce search (CQ-SID + EG-GRPO)."""

__version__ = "0.1.0"
