"""Pure IMA support: measurement-list templates, runtime policies, incremental PCR 10 replay.

The verifier calls ``parse_runtime_policy`` once per policy and ``replay_and_check`` per round.
"""

from allowlists.ima.framing import frame_lines, parse_log, split_entries, split_log
from allowlists.ima.keylime_import import (
    KeylimeConversion,
    convert_keylime_policy,
    import_keylime_policy,
)
from allowlists.ima.policy import (
    RuntimePolicy,
    dump_runtime_policy,
    generate_policy,
    parse_runtime_policy,
)
from allowlists.ima.replay import ImaResult, ImaState, check_not_rewound, replay_and_check
from allowlists.ima.template import (
    EncodedEntry,
    ImaEntry,
    encode_entry,
    parse_entry,
    template_hash,
)

__all__ = [
    "EncodedEntry",
    "ImaEntry",
    "ImaResult",
    "ImaState",
    "KeylimeConversion",
    "RuntimePolicy",
    "check_not_rewound",
    "convert_keylime_policy",
    "dump_runtime_policy",
    "encode_entry",
    "frame_lines",
    "generate_policy",
    "import_keylime_policy",
    "parse_entry",
    "parse_log",
    "parse_runtime_policy",
    "replay_and_check",
    "split_entries",
    "split_log",
    "template_hash",
]
