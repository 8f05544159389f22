"""Run configuration and presets.

A `RunConfig` is everything that determines a run's result. Its identity (the hash in the run id)
leaves out what only changes how fast or where it runs (device, DAPE implementation, compile,
checkpoint interval, evaluation memory budget) and the preset's name.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field

from che.errors import CheError, unknown_name_error


@dataclass
class RunConfig:
    """Defaults: the CHE reference protocol (Delétang et al. 2023); presets override them."""

    task: str
    pe: str
    preset: str = "custom"
    seed: int = 0
    # training (the reference's): one length per step drawn from 1..train_length, Adam, clipping, constant lr
    steps: int = 1_000_000
    length_seed: int = 0         # the stream of per-step lengths (shared by the seeds, see README)
    batch_size: int = 128
    lr: float = 3e-4
    max_grad_norm: float = 1.0
    train_length: int = 40
    # evaluation (the reference's): every length 1..max_test_length, eval_samples per length in
    # sub-batches of eval_batch_size, data from eval_seed
    max_test_length: int = 500
    eval_samples: int = 512
    eval_batch_size: int = 64
    eval_seed: int = 1
    eval_dropout: bool = False   # the reference keeps dropout on at evaluation; we default to off
    # model (the reference transformer)
    n_layers: int = 5
    d_model: int = 64
    n_heads: int = 8
    ffn_mult: int = 4
    dropout: float = 0.1
    # positional-encoding options
    rand_max_length: int = 2048
    rand_at_eval: bool = True
    rand_mode: str = "offsets"   # offsets (RPE's method), reference (RPE's released code), positions
    learned_max_length: int = 2048
    dape_width: int = 64
    dape_variant: str = "S+B+f(S,B)"
    dape_kernel: int = 3
    dape_init: str = "haiku"     # DAPE's MLP: Haiku's initialisation (as the CHE code) or torch's
    # numerics
    bf16: bool = False
    tf32: bool = True            # on CUDA, float32 matmuls in TF32 (as JAX's default precision there)
    # how it runs, not what it computes (left out of the identity)
    dape_impl: str = "fast"
    compile: bool = False
    cuda_graphs: bool = True     # capture each training step as a CUDA graph (on CUDA only)
    attention: str = "fused"     # fused (SDPA) or explicit (materialised scores) attention
    checkpoint_every: int = 500
    save_model: bool = True      # keep the trained weights beside the result (che eval, che show)
    eval_memory_gb: float = 4.0
    extra: dict = field(default_factory=dict)  # free-form notes, part of the identity

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """A RunConfig from its dict (a result's "config", a checkpoint's), each value of its field's
        type: a file edited or written by someone else is refused in one line."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CheError(f"unknown run-config keys: {', '.join(sorted(unknown))}")
        return cls(**{key: typed_value(key, value) for key, value in data.items()})

    def identity(self) -> dict:
        """What determines the result: the settings, and the versions of the task's and the PE's
        implementations (`implementations`)."""
        values = {k: v for k, v in self.to_dict().items() if k not in NOT_IDENTITY}
        return values | {"implementations": self.implementations()}

    def implementations(self) -> dict:
        """{"task": {name: version}, "pe": {class name: version, ...}} of the code this run uses."""
        return implementation_versions(self.task, self.pe)

    def config_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        return f"seed{self.seed}-lr{self.lr:g}-{self.config_hash()}"

    def validate(self) -> None:
        """Impossible or inconsistent settings, as one-line CheErrors."""
        positive = ("steps", "batch_size", "train_length", "max_test_length", "eval_samples",
                    "eval_batch_size", "n_layers", "d_model", "n_heads", "ffn_mult", "rand_max_length",
                    "learned_max_length", "dape_width", "dape_kernel", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise CheError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.steps > 100_000_000:
            raise CheError(f"--steps must be at most 100000000, got {self.steps}")
        if self.max_test_length <= self.train_length:
            raise CheError(f"--max-test-length ({self.max_test_length}) must be greater than "
                           f"--train-length ({self.train_length}): the score is over the unseen lengths")
        if self.max_test_length > 10_000:
            raise CheError(f"--max-test-length must be at most 10000, got {self.max_test_length}")
        if not 0 < self.lr < 1:
            raise CheError(f"--lr must be in (0, 1), got {self.lr}")
        if not 0 < self.max_grad_norm < float("inf"):  # <= 0 would turn clipping into gradient ascent
            raise CheError(f"max_grad_norm must be a positive number, got {self.max_grad_norm}")
        if not 0 <= self.dropout < 1:
            raise CheError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.d_model % self.n_heads:
            raise CheError(f"--d-model ({self.d_model}) must be divisible by --n-heads ({self.n_heads})")
        if not self.eval_memory_gb > 0 or self.eval_memory_gb == float("inf"):
            raise CheError(f"--eval-memory-gb must be a positive number, got {self.eval_memory_gb}")
        for name, value in (("seed", self.seed), ("length_seed", self.length_seed), ("eval_seed", self.eval_seed)):
            if not 0 <= value < 2**32:
                raise CheError(f"--{name.replace('_', '-')} must be in [0, 2^32), got {value}")
        from che.models.positional.base import RAND_MODES
        from che.models.positional.dape import IMPLEMENTATIONS, INITIALISATIONS, VARIANTS
        from che.models.transformer import ATTENTION

        for name, value, choices in (("rand_mode", self.rand_mode, RAND_MODES),
                                     ("dape_variant", self.dape_variant, VARIANTS),
                                     ("dape_impl", self.dape_impl, IMPLEMENTATIONS),
                                     ("dape_init", self.dape_init, INITIALISATIONS),
                                     ("attention", self.attention, ATTENTION)):
            if value not in choices:
                raise CheError(f"--{name.replace('_', '-')}: unknown value '{value}' (choices: {', '.join(choices)})")

    def validate_for(self, task) -> None:
        """What needs the task too: a randomized PE draws distinct positions (or offsets) from
        [0, rand_max_length) for every token of the longest sequence it sees."""
        if "rand-" not in self.pe:
            return
        longest = max(self.train_length, self.max_test_length if self.rand_at_eval else 0)
        tokens = task.input_length(longest) + task.output_length(longest)
        if self.rand_max_length < tokens:
            raise CheError(f"--rand-max-length ({self.rand_max_length}) must be at least the longest sequence "
                           f"the randomized PE sees ({tokens} tokens of {self.task} at length {longest})")

    def pack_key(self) -> str:
        """Runs with the same key differ only in PACK_FIELDS and may train as one pack."""
        blob = json.dumps({k: v for k, v in self.identity().items() if k not in PACK_FIELDS},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


FIELD_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "dict": dict}


def typed_value(name: str, value, what: str = "config"):
    """`value` for RunConfig field `name` if it has the field's type (an int is a float too, a bool
    is not an int), else a CheError naming `what` it came from."""
    declared = {f.name: f.type for f in dataclasses.fields(RunConfig)}[name]
    expected = FIELD_TYPES.get(str(declared))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is not None and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
        raise CheError(f"{what}: {name} must be {declared}, got {value!r}")
    return value


NOT_IDENTITY = {"preset", "dape_impl", "compile", "cuda_graphs", "attention", "checkpoint_every", "eval_memory_gb",
                "save_model"}

@functools.lru_cache(maxsize=None)
def _implementation_versions(task: str, pe: str) -> str:
    from che.models.positional import parse_pe
    from che.models.positional.dape import DAPE
    from che.registry import TASKS

    task_cls = TASKS.get(task)
    build = parse_pe(pe, None)
    pes = {build.cls.name: getattr(build.cls, "version", 1)}
    if build.dape:
        pes["dape"] = DAPE.version
    return json.dumps({"task": {task_cls.name: getattr(task_cls, "version", 1)}, "pe": pes})


def implementation_versions(task: str, pe: str) -> dict:
    return json.loads(_implementation_versions(task, pe))


# Runs that differ only in these train together as one pack (`che.runners.train.Trainer`).
PACK_FIELDS = ("seed", "lr")

# Each preset overrides RunConfig's defaults; options given on the command line override the preset.
PRESETS: dict[str, dict] = {
    # Seconds: what CI runs. Tiny lengths, a handful of steps.
    "smoke": dict(steps=10, batch_size=8, train_length=5, max_test_length=8, eval_samples=8,
                  eval_batch_size=8, checkpoint_every=5),
    # One task x PE in about 2-3 minutes on one CPU core: trains on 1..20, tests on 1..60, so the
    # score covers lengths 21..60. Learns visibly (e.g. reverse_string x alibi: ~90% seen, ~65% unseen).
    "cpu": dict(steps=1_500, batch_size=32, lr=1e-3, train_length=20, max_test_length=60,
                eval_samples=64, eval_batch_size=64, checkpoint_every=500),
    # The DAPE paper's CHE setting (Zheng et al. 2024, §5 / Table 2).
    "paper": dict(steps=200_000, batch_size=128, lr=3e-4, train_length=40, max_test_length=500,
                  eval_samples=512, eval_batch_size=64, d_model=256, n_heads=8, n_layers=5,
                  dape_width=64, checkpoint_every=5_000),
}


def make_config(task: str, pe: str, preset: str = "cpu", **overrides) -> RunConfig:
    """A RunConfig from a preset and explicit overrides (None values mean 'not given')."""
    if preset not in PRESETS:
        raise unknown_name_error("preset", preset, PRESETS)
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = RunConfig(task=task, pe=pe, preset=preset, **values)
    config.validate()
    return config
