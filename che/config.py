"""A run's configuration: the model's (`ModelConfig`) inside the run's (`RunConfig`), the presets,
and the one place that checks every value.

A `RunConfig` is everything that determines a run's result. Each setting is described once, where it
is declared (`setting`: what it does, whether it is part of the identity, of the protocol, an
evaluation setting, a pack or grid axis, and the value results written before it existed read as);
`SETTINGS` and the lists other modules need are read off those declarations. Its identity (the hash
in the run id) leaves out what only changes how fast or where it runs and the preset's name. Its
dict (`to_dict`, what a result file stores as "config") is flat: the model's settings beside the
run's, under the same names as the TOML `[overrides]` table and `--set key=value`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from che.errors import CheError, echo, unknown_name_error

# The choices of a setting, named once: the models, the runners and the CLI use these.
Device = Literal["auto", "cpu", "cuda"]
RandMode = Literal["offsets", "reference", "positions"]  # how relative and bias PEs randomize (`rand-`)
DapeVariant = Literal["S+B+f(S,B)", "S+B+f(S+B)", "S+f(S,B)", "S+B+f(B)"]  # DAPE and its ablations
DapeImpl = Literal["fast", "literal", "triton"]
DapeInit = Literal["haiku", "torch"]
Attention = Literal["auto", "fused", "explicit", "flex"]
Precision = Literal["fp32", "tf32", "bf16", "bf16-emulated"]  # see che.runners.precision
RopeScaling = Literal["none", "yarn", "ntk"]  # a rope model at test lengths past training (rope-yarn, rope-ntk)
DEVICES, RAND_MODES, DAPE_VARIANTS = get_args(Device), get_args(RandMode), get_args(DapeVariant)
DAPE_IMPLEMENTATIONS, DAPE_INITIALISATIONS, ATTENTION = get_args(DapeImpl), get_args(DapeInit), get_args(Attention)
PRECISIONS, ROPE_SCALINGS = get_args(Precision), get_args(RopeScaling)
CHOICES = {"rand_mode": RAND_MODES, "dape_variant": DAPE_VARIANTS, "dape_impl": DAPE_IMPLEMENTATIONS,
           "dape_init": DAPE_INITIALISATIONS, "attention": ATTENTION, "precision": PRECISIONS,
           "rope_scaling": ROPE_SCALINGS}
# How results made before the precision setting said it (bf16, tf32 flags); a run's identity keeps
# saying it so, so that its run id is the one it always had.
LEGACY_PRECISION = {"fp32": {"bf16": False, "tf32": False}, "tf32": {"bf16": False, "tf32": True},
                    "bf16": {"bf16": True, "tf32": True}}

FIRE_THRESHOLD_RATIO = 1 / 8  # FIRE's threshold / the longest training sequence, as the DAPE code
SEED_LIMIT = 2**32


_NEVER = object()


def setting(default, about: str, *, identity: bool = True, protocol: bool | None = None, evaluation: bool = False,
            pack: bool = False, axis: str | None = None, absent=_NEVER, from_task: bool = False, **kwargs):
    """A setting, described once, where it is declared (`che settings` lists them):
    - `about`: what it does, in one line;
    - `identity`: part of the run's identity (its run id); False for what only changes how fast or
      where a run computes, or how it reports;
    - `protocol`: part of the protocol, what the runs of a leaderboard cell share (default: as
      `identity`; False for the task, PE, seed and lr, over which cells and tables range);
    - `evaluation`: `che eval` may change it on a stored run;
    - `pack`: runs that differ only in such settings train together as one pack;
    - `axis`: a sweep's grid axis (its key in a sweep file), not an override;
    - `absent`: the value that results written before the setting existed had in effect; at that
      value it is left out of the identity, so that every earlier run keeps its run id;
    - `from_task`: a model setting set from the task, not by the user."""
    metadata = {"about": about, "identity": identity, "protocol": identity if protocol is None else protocol,
                "evaluation": evaluation, "pack": pack, "axis": axis, "from_task": from_task}
    if absent is not _NEVER:
        metadata["absent"] = absent
    if "default_factory" in kwargs:
        return field(metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class ModelConfig:
    """The shared transformer and its PE. `input_size` and `output_size` come from the task
    (`RunConfig.model_for`); the rest from the run."""

    input_size: int = setting(0, "task input vocabulary (set from the task; the model adds one empty token)",
                              from_task=True)
    output_size: int = setting(0, "task output classes (set from the task)", from_task=True)
    pe: str = setting("none", "the positional encoding, by name (`che pes`)", protocol=False, axis="pes")
    n_layers: int = setting(5, "transformer layers")
    d_model: int = setting(64, "model width")
    n_heads: int = setting(8, "attention heads")
    ffn_mult: int = setting(4, "feed-forward width / d_model")
    dropout: float = setting(0.1, "dropout rate")
    rand_max_length: int = setting(2048, "L, the range of randomized positions (rand- PEs)")
    rand_at_eval: bool = setting(True, "randomized PEs also randomize at evaluation, as the reference",
                                 evaluation=True)
    rand_mode: str = setting("offsets", "how rand- relative and bias PEs draw: offsets (RPE's method), "
                                        "reference (RPE's released code bit for bit), positions")
    learned_max_length: int = setting(2048, "rows of the learned PE's table")
    dape_width: int = setting(64, "D, the hidden width of DAPE's MLP")
    dape_variant: str = setting("S+B+f(S,B)", "DAPE or one of the paper's ablations")
    dape_kernel: int = setting(3, "k of DAPE V2's 1 x k convolutions")
    dape_impl: str = setting("fast", "DAPE's implementation (the same function): fast, literal, or triton (fused "
                                     "kernels, CUDA)", identity=False)
    dape_init: str = setting("haiku", "DAPE's MLP initialisation: haiku (as the CHE code) or torch (as DAPE's)")
    fire_threshold: float = setting(64.0, "FIRE's initial threshold L (set from the training length)", from_task=True)
    rope_fraction: float = setting(0.75, "p of p-rope: the fraction of RoPE's frequency pairs that rotate (the highest)",
                                   absent=0.75)
    rope_scaling: str = setting("none", "a rope model evaluated past its longest training sequence with YaRN's or "
                                        "NTK-aware scaling (yarn, ntk): che eval on a kept rope run", evaluation=True,
                                absent="none")
    longest_train_tokens: int = setting(40, "N, the longest training sequence in tokens (set from the task): where "
                                            "rope-yarn and rope-ntk start scaling", from_task=True)
    bipe_segment: int = setting(8, "BiPE's segment length in tokens, for tasks without separator tokens", absent=8)
    segment_separators: tuple = setting((), "BiPE's separator token ids (set from the task)", from_task=True)
    attention: str = setting("auto", "fused (SDPA), explicit (materialised scores), flex (FlexAttention, the bias "
                                     "read in its score modification), or auto: explicit on a CPU, fused on CUDA",
                             identity=False)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Impossible or inconsistent model settings, as one-line CheErrors."""
        for name in ("n_layers", "d_model", "n_heads", "ffn_mult", "rand_max_length", "learned_max_length",
                     "dape_width", "dape_kernel", "bipe_segment"):
            _at_least(name, getattr(self, name), 1)
        if not 0 <= self.rope_fraction <= 1:
            raise CheError(f"rope_fraction must be in [0, 1], got {self.rope_fraction}")
        if not 0 <= self.dropout < 1:
            raise CheError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.d_model % self.n_heads:
            raise CheError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name, choices in CHOICES.items():
            if hasattr(self, name) and getattr(self, name) not in choices:
                raise CheError(f"{name}: unknown value '{echo(getattr(self, name))}' (choices: {', '.join(choices)})")
        if self.rope_scaling != "none":  # only a PE that has such an evaluation (rope: rope-yarn, rope-ntk)
            from che.pe_names import evaluated_as, read

            evaluated_as(read(self.pe), self)


# The fields of a ModelConfig that a run sets (the others come from the task).
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig) if not f.metadata["from_task"])


@dataclass
class RunConfig:
    """Defaults: the CHE reference protocol (Delétang et al. 2023); presets override them."""

    task: str = setting("", "the task, by name (`che tasks`)", protocol=False, axis="tasks")
    preset: str = setting("custom", "the preset the settings started from (not part of the identity)",
                          identity=False, axis="preset")
    seed: int = setting(0, "seed of the model, the data, dropout and randomized positions", protocol=False,
                        pack=True, axis="seeds")
    # training, as the reference: one length per step drawn from 1..train_length, Adam, clipping, constant lr
    steps: int = setting(1_000_000, "training steps (optimiser updates)")
    length_seed: int = setting(0, "seed of the per-step training lengths (shared by the seeds of a pack)")
    batch_size: int = setting(128, "training batch size")
    lr: float = setting(3e-4, "Adam's learning rate (constant)", protocol=False, pack=True, axis="lrs")
    max_grad_norm: float = setting(1.0, "global-norm gradient clipping")
    train_length: int = setting(40, "train on lengths 1..N")
    # evaluation, as the reference: every length 1..max_test_length, eval_samples per length in
    # sub-batches of eval_batch_size, data from eval_seed
    max_test_length: int = setting(500, "evaluate on lengths 1..M", evaluation=True)
    eval_samples: int = setting(512, "test examples per length", evaluation=True)
    eval_batch_size: int = setting(64, "examples per evaluation sub-batch (accuracy is pooled per sub-batch)",
                                   evaluation=True)
    eval_seed: int = setting(1, "seed of the test data (the same for every run of a task)", evaluation=True)
    eval_dropout: bool = setting(False, "keep dropout on at evaluation, as the reference code does", evaluation=True)
    # the model, its settings flat beside the run's (in result files, sweep files, --set)
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"about": "the model (its fields are flat)"})
    # numerics
    precision: str = setting("tf32", "fp32, tf32 (float32 with TF32 matmuls on CUDA, as JAX there; fp32 on a CPU), "
                                     "bf16 (autocast), or bf16-emulated (bf16's rounding in float32)")
    # how it runs, not what it computes (left out of the identity)
    compile: bool = setting(False, "torch.compile the model", identity=False)
    cuda_graphs: bool = setting(True, "capture each training step as a CUDA graph (on CUDA only)", identity=False)
    checkpoint_every: int = setting(500, "steps between checkpoints", identity=False)
    save_model: bool = setting(True, "keep the trained weights beside the result (che eval, che show)", identity=False)
    eval_memory_gb: float = setting(4.0, "memory budget of evaluation chunks (GB)", identity=False, evaluation=True)
    tensorboard: str = setting("", "write TensorBoard logs to this folder (empty: none)", identity=False)
    extra: dict = setting(None, "free-form notes, part of the identity", default_factory=dict)

    @property
    def pe(self) -> str:
        return self.model.pe

    # -- the flat dict: result files, checkpoints, sweep files, --set ---------------------------
    def to_dict(self) -> dict:
        """Flat: the run's settings and the model's (those the run sets), in `SETTINGS` order."""
        values = dataclasses.asdict(self)
        values |= values.pop("model")
        return {key: values[key] for key in SETTINGS}

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """A RunConfig from its flat dict (a result's "config", a checkpoint's), each value of its
        field's type: a file edited or written by someone else is refused in one line."""
        data = legacy_settings(data)
        unknown = set(data) - set(SETTINGS)
        if unknown:
            raise CheError(f"unknown run-config keys: {', '.join(sorted(unknown))}")
        typed = {key: typed_value(key, value) for key, value in data.items()}
        model = ModelConfig(**{key: typed.pop(key) for key in list(typed) if key in MODEL_FIELDS})
        return cls(model=model, **typed)

    def replace(self, **changes) -> RunConfig:
        """A copy with some flat settings changed."""
        return RunConfig.from_dict(self.to_dict() | changes)

    def model_for(self, task) -> ModelConfig:
        """The model of this run on `task` (its vocabularies, the longest training sequence in tokens,
        and FIRE's threshold at 1/8 of it, as the DAPE code)."""
        longest = task.input_length(self.train_length) + task.output_length(self.train_length)
        return dataclasses.replace(self.model, input_size=task.input_size, output_size=task.output_size,
                                   fire_threshold=longest * FIRE_THRESHOLD_RATIO, longest_train_tokens=longest,
                                   segment_separators=tuple(task.segment_separators))

    # -- identity -------------------------------------------------------------------------------
    def identity(self) -> dict:
        """What determines the result: the settings that are part of it (each says so where it is
        declared; one added later is left out at the value earlier runs had), and the versions of
        the task's and the PE's implementations (`implementations`)."""
        values = {k: v for k, v in self.to_dict().items() if SETTINGS[k].metadata["identity"]
                  and not ("absent" in SETTINGS[k].metadata and v == SETTINGS[k].metadata["absent"])}
        if values["precision"] in LEGACY_PRECISION:  # the identity says it as runs before `precision` did
            values |= LEGACY_PRECISION[values.pop("precision")]
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

    def pack_key(self) -> str:
        """Runs with the same key differ only in pack settings (seed, lr) and may train as one pack."""
        blob = json.dumps({k: v for k, v in self.identity().items() if k not in pack_settings()},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    # -- validation: every value, here ------------------------------------------------------------
    def validate(self) -> None:
        """Impossible or inconsistent settings, as one-line CheErrors."""
        for name in ("steps", "batch_size", "train_length", "max_test_length", "eval_samples", "eval_batch_size",
                     "checkpoint_every"):
            _at_least(name, getattr(self, name), 1)
        if self.steps > 100_000_000:
            raise CheError(f"steps must be at most 100000000, got {self.steps}")
        if self.max_test_length <= self.train_length:
            raise CheError(f"max_test_length ({self.max_test_length}) must be greater than train_length "
                           f"({self.train_length}): the score is over the unseen lengths")
        if self.max_test_length > 10_000:
            raise CheError(f"max_test_length must be at most 10000, got {self.max_test_length}")
        if not 0 < self.lr < 1:
            raise CheError(f"lr must be in (0, 1), got {self.lr:g}")
        if not 0 < self.max_grad_norm < math.inf:  # <= 0 would turn clipping into gradient ascent
            raise CheError(f"max_grad_norm must be a positive number, got {self.max_grad_norm}")
        if self.precision not in PRECISIONS:
            raise CheError(f"precision: unknown value '{echo(self.precision)}' (choices: {', '.join(PRECISIONS)})")
        if not 0 < self.eval_memory_gb < math.inf:
            raise CheError(f"eval_memory_gb must be a positive number, got {self.eval_memory_gb}")
        for name in ("seed", "length_seed", "eval_seed"):
            if not 0 <= getattr(self, name) < SEED_LIMIT:
                raise CheError(f"{name} must be in [0, 2^32), got {getattr(self, name)}")
        self.model.validate()

    def validate_for(self, task) -> None:
        """What needs the task too: a randomized PE draws distinct positions (or offsets) from
        [0, rand_max_length) for every token of the longest sequence it sees."""
        from che.pe_names import read

        if not read(self.pe).randomized:
            return
        longest = max(self.train_length, self.max_test_length if self.model.rand_at_eval else 0)
        tokens = task.input_length(longest) + task.output_length(longest)
        if self.model.rand_max_length < tokens:
            raise CheError(f"rand_max_length ({self.model.rand_max_length}) must be at least the longest sequence "
                           f"the randomized PE sees ({tokens} tokens of {self.task} at length {longest})")


@functools.lru_cache(maxsize=None)
def _implementation_versions(task: str, pe: str) -> str:
    from che.pe_names import read
    from che.registry import TASKS

    task_cls = type(TASKS.get(task))
    return json.dumps({"task": {task_cls.name: getattr(task_cls, "version", 1)}, "pe": read(pe).versions()})


def implementation_versions(task: str, pe: str) -> dict:
    """The versions of the code a run of `task` x `pe` uses, part of its identity:
    {"task": {name: version}, "pe": {name: version, ...}} (`che.pe_names.PEName.versions`)."""
    return json.loads(_implementation_versions(task, pe))


def _at_least(name: str, value, low: int) -> None:
    if value < low:
        raise CheError(f"{name} must be at least {low}, got {value}")


# Every setting, flat (the run's fields with the model's in place of `model`, those set from the task
# left out), in declaration order: name -> the dataclass field (type, default, and its metadata:
# see `setting`).
SETTINGS = {f.name: f for run_field in dataclasses.fields(RunConfig) for f in (
    [m for m in dataclasses.fields(ModelConfig) if not m.metadata["from_task"]] if run_field.name == "model"
    else [run_field])}


def settings_where(flag: str) -> tuple[str, ...]:
    """The settings whose metadata sets `flag` ("evaluation", "pack", ...)."""
    return tuple(name for name, spec in SETTINGS.items() if spec.metadata[flag])


def pack_settings() -> tuple[str, ...]:
    return settings_where("pack")


def protocol_settings() -> tuple[str, ...]:
    return settings_where("protocol")


def evaluation_settings() -> tuple[str, ...]:
    return settings_where("evaluation")


# A sweep's grid axes: setting -> its key in a sweep file.
AXES = {name: spec.metadata["axis"] for name, spec in SETTINGS.items() if spec.metadata["axis"]}


def legacy_settings(config: dict) -> dict:
    """A flat config in today's terms, the one translation of results written before a setting
    existed: the bf16/tf32 flags of the time become `precision` (a config without the tf32 flag
    predates TF32 in che, whose matmuls were float32: fp32)."""
    config = dict(config)
    if "bf16" in config or "tf32" in config:
        bf16, tf32 = bool(config.pop("bf16", False)), bool(config.pop("tf32", False))
        config.setdefault("precision", "bf16" if bf16 else "tf32" if tf32 else "fp32")
    return config


FIELD_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "dict": dict}


def typed_value(name: str, value, what: str = "config"):
    """`value` for setting `name` if it has the setting's type (an int is a float too, a bool is not
    an int), else a CheError naming `what` it came from."""
    declared = str(SETTINGS[name].type)
    expected = FIELD_TYPES.get(declared)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is not None and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
        raise CheError(f"{what}: {name} must be {declared}, got {echo(repr(value))}")
    return value


def parse_setting(text: str, what: str = "--set") -> tuple[str, object]:
    """`key=value` as typed on a command line -> (key, value of the setting's type)."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip().replace("-", "_"), raw.strip()
    if not sep or not key:
        raise CheError(f"{what} takes key=value, got {echo(repr(text))} (`che settings` lists the keys)")
    if key.startswith("slurm."):  # the slurm executor's table: checked there
        return key, _slurm_value(raw)
    if key in ("task", "pe", "preset"):
        raise CheError(f"{what}: '{key}' is an option of its own (--{key}), not a setting")
    if key not in SETTINGS:
        raise CheError(f"{what}: {unknown_name_error('setting', key, set(SETTINGS) - set(AXES), 'che settings')}")
    declared = str(SETTINGS[key].type)
    try:
        if declared == "bool":
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            value = raw.lower() in ("true", "1", "yes", "on")
        elif declared == "dict":
            value = json.loads(raw)
        else:
            value = FIELD_TYPES[declared](raw)
    except (ValueError, json.JSONDecodeError):
        raise CheError(f"{what}: {key} must be {declared}, got {echo(repr(raw))}") from None
    return key, typed_value(key, value, what)


def _slurm_value(raw: str):
    """A [slurm] table value typed on a command line: a number, true/false, or text."""
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(raw.lower(), raw)


# Each preset overrides RunConfig's defaults; settings given explicitly override the preset.
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
Preset = Literal["smoke", "cpu", "paper"]
DEFAULT_PRESET = "cpu"  # what a run uses when no preset is given


def preset_value(preset: str, name: str):
    """The value a run of `preset` gets for setting `name` (the preset's, else RunConfig's default)."""
    if name in PRESETS[preset]:
        return PRESETS[preset][name]
    spec = SETTINGS[name]
    return spec.default_factory() if callable(spec.default_factory) else spec.default


def make_config(task: str, pe: str, preset: str = DEFAULT_PRESET, **overrides) -> RunConfig:
    """A validated RunConfig from a preset and explicit flat settings (None values mean 'not given')."""
    if preset not in PRESETS:
        raise unknown_name_error("preset", preset, PRESETS)
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = RunConfig.from_dict({"task": task, "pe": pe, "preset": preset, **values})
    config.validate()
    return config
