"""EG-GRPO: ranking-aligned RL of the generator with expert injection (DESIGN.md section 1).

`reward` scores SIDs from a logged request, `group` builds G policy + K expert members with
group-normalised advantages, `grpo` trains. K = 0 is plain GRPO.
"""

from genrecall.rl.group import Groups, build_groups, draw_experts, group_advantages, sample_sids
from genrecall.rl.grpo import GRPOConfig, GRPOResult, RLDataset, member_log_probs, train_grpo
from genrecall.rl.reward import QualityRanker, RankerReward, RequestSids, RewardConfig, request_sids, rewards

__all__ = [
    "GRPOConfig",
    "GRPOResult",
    "Groups",
    "QualityRanker",
    "RLDataset",
    "RankerReward",
    "RequestSids",
    "RewardConfig",
    "build_groups",
    "draw_experts",
    "group_advantages",
    "member_log_probs",
    "request_sids",
    "rewards",
    "sample_sids",
    "train_grpo",
]
