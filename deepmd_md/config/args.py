"""The input.json schema: DeePMD-kit v3 keys, defaults and what deepmd_md does with each.

Docs are written for deepmd_md; keys, aliases and defaults follow DeePMD-kit v3's documentation.
"""

from __future__ import annotations

import re

from deepmd_md.config.schema import REQUIRED, Arg, Variant

__all__ = ["ROOT_ARGS", "ACTIVATIONS"]

from deepmd_md.config.common import ACTIVATIONS, IGN, U  # noqa: E402
from deepmd_md.config.common import activation as _activation  # noqa: E402
from deepmd_md.config.common import check_neuron as _check_neuron  # noqa: E402
from deepmd_md.config.common import check_nonneg as _check_nonneg  # noqa: E402
from deepmd_md.config.common import check_positive as _check_positive  # noqa: E402
from deepmd_md.config.common import precision as _precision  # noqa: E402


def _check_compile(value) -> str | None:
    if value not in (True, False, "auto"):
        return f"must be true, false or \"auto\", not {value!r}"
    return None


def _check_batch_size(value) -> str | None:
    items = value if isinstance(value, list) else [value]
    for v in items:
        if isinstance(v, int) and v < 1:
            return f"batch size must be >= 1, got {v}"
        if isinstance(v, str) and not re.fullmatch(r"auto(:\d+)?", v):
            if v.startswith(("mixed:", "max:", "filter:")):
                return f"batch_size '{v}' is not supported yet by deepmd_md (use int or 'auto:N')"
            return f"bad batch_size '{v}'; use an int, 'auto' or 'auto:N'"
    return None


# documented by DeePMD-kit; each one not registered (yet) is a clear "not supported yet"
_DEEPMD_DESCRIPTORS = ("se_e3", "se_at", "se_a_3be", "se_e3_tebd", "se_a_tpe", "se_a_ebd",
                       "se_a_mask", "se_a_ebd_v2", "loc_frame", "se_atten", "dpa1", "se_atten_v2",
                       "dpa2", "dpa3", "hybrid")


def _descriptor_variant() -> Variant:
    """The descriptor types, from the registry (model/descriptors): each module declares its keys."""
    from deepmd_md.model import descriptors

    choices, alias = descriptors.schemas()
    return Variant("type", choices, default=None, alias=alias,
                   unsupported=tuple(t for t in _DEEPMD_DESCRIPTORS
                                     if t not in choices and t not in alias),
                   doc="Descriptor: " + ", ".join(choices) + ".")


DESCRIPTOR = _descriptor_variant()

FITTING = Variant(
    "type",
    {
        "ener": (
            Arg("numb_fparam", "int", 0, "Frame parameters per frame (fparam.npy).", status=U),
            Arg("numb_aparam", "int", 0, "Atomic parameters per atom (aparam.npy).", status=U),
            Arg(
                "dim_case_embd", "int", 0, "Dimension of the case embedding (multi-task).", status=U
            ),
            Arg(
                "neuron",
                "list[int]",
                [120, 120, 120],
                "Fitting-net hidden layer sizes.",
                alias=("n_neuron",),
                check=_check_neuron,
            ),
            _activation("fitting net"),
            _precision("fitting net"),
            Arg("resnet_dt", "bool", True, "Scale the residual connections by a trainable dt."),
            Arg(
                "trainable",
                "bool|list[bool]",
                True,
                "Whether the fitting-net parameters are trained (a list: per layer).",
            ),
            Arg(
                "rcond",
                "float|None",
                None,
                "Cut-off ratio of small singular values in the least-squares energy bias.",
            ),
            Arg("seed", "int|None", None, "Seed of the parameter initialisation."),
            Arg(
                "atom_ener",
                "list[float|None]",
                [],
                "Fixed energy of an isolated atom per type.",
                status=U,
            ),
            Arg(
                "layer_name",
                "list[str]|None",
                None,
                "Names to share layers between fittings.",
                status=U,
            ),
            Arg("use_aparam_as_mask", "bool", False, "Use aparam as an atom mask.", status=U),
        ),
    },
    default="ener",
    unsupported=("dos", "property", "dipole", "polar", "direct_force_ener"),
    doc="Fitting network: ener (atomic energies summed to the total energy).",
)

MODEL = (
    Arg("type_map", "list[str]|None", None,
        "Element name of each model type; data types are matched by name (type_map.raw)."),
    Arg("descriptor", "dict", REQUIRED, "The descriptor.", variant=DESCRIPTOR),
    Arg("fitting_net", "dict", REQUIRED, "The fitting network.", variant=FITTING),
    Arg("data_stat_nbatch", "int", 10,
        "Batches per system used for the environment-matrix statistics.", check=_check_positive),
    Arg("data_stat_protect", "float", 1e-2,
        "Lower bound of the environment-matrix standard deviation.", check=_check_positive),
    Arg("data_bias_nsample", "int", 10, "Frames sampled for the output bias.",
        check=_check_positive),
    Arg("type", "str", "standard", "Model kind.", choices=("standard",),
        unsupported_choices=("frozen", "pairtab", "pairwise_dprc", "linear_ener", "zbl")),
    Arg("type_embedding", "dict|None", None, "Type embedding network.", status=U),
    Arg("modifier", "dict|None", None, "Long-range modifier (DPLR).", status=U),
    Arg("compress", "dict|None", None, "Model compression.", status=U),
    Arg("spin", "dict|None", None, "Spin model.", status=U),
    Arg("use_srtab", "str|None", None, "Short-range pair table added to the model.", status=U),
    Arg("smin_alpha", "float|None", None, "Pair-table switch parameter.", status=U),
    Arg("sw_rmin", "float|None", None, "Pair-table switch start.", status=U),
    Arg("sw_rmax", "float|None", None, "Pair-table switch end.", status=U),
    Arg("srtab_add_bias", "bool", True, "Whether the pair table is added to the bias.",
        status=U),
    Arg("pair_exclude_types", "list[list[int]]", [], "Type pairs excluded from the model.",
        status=U),
    Arg("atom_exclude_types", "list[int]", [], "Types whose atomic outputs are zero.", status=U),
    Arg("preset_out_bias", "dict|None", None, "Preset output bias per type.", status=U),
    Arg("finetune_head", "str|None", None, "Head used when fine-tuning.", status=U),
)  # fmt: skip

LEARNING_RATE = Variant(
    "type",
    {
        "exp": (
            Arg("start_lr", "float", 1e-3, "Learning rate of step 0.", check=_check_positive),
            Arg(
                "stop_lr",
                "float",
                1e-8,
                "Learning rate reached at numb_steps.",
                check=_check_positive,
            ),
            Arg(
                "decay_steps",
                "int",
                5000,
                "Steps between two decays (lr is a staircase).",
                check=_check_positive,
            ),
            Arg(
                "decay_rate",
                "float|None",
                None,
                "Decay per decay_steps; if given, it overrides the one implied by stop_lr.",
                check=_check_positive,
            ),
            Arg(
                "scale_by_worker",
                "str",
                "linear",
                "LR scaling with the number of workers "
                "(deepmd_md trains on one worker, so it has no effect).",
                choices=("linear", "sqrt", "none"),
                status=IGN,
            ),
        )
    },
    default="exp",
    unsupported=("cosine",),
    doc="Learning-rate schedule: exp = start_lr x decay_rate^(step // decay_steps).",
)


def _pref(name: str, default: float, doc: str, status: str = "supported") -> Arg:
    return Arg(name, "float", default, doc, status=status, check=_check_nonneg)


LOSS = Variant(
    "type",
    {
        "ener": (
            _pref("start_pref_e", 0.02, "Energy prefactor at the start."),
            _pref("limit_pref_e", 1.0, "Energy prefactor at the end."),
            _pref("start_pref_f", 1000.0, "Force prefactor at the start."),
            _pref("limit_pref_f", 1.0, "Force prefactor at the end."),
            _pref("start_pref_v", 0.0, "Virial prefactor at the start."),
            _pref("limit_pref_v", 0.0, "Virial prefactor at the end."),
            _pref("start_pref_ae", 0.0, "Atomic-energy prefactor at the start.", U),
            _pref("limit_pref_ae", 0.0, "Atomic-energy prefactor at the end.", U),
            _pref("start_pref_pf", 0.0, "Atom-weighted force prefactor at the start.", U),
            _pref("limit_pref_pf", 0.0, "Atom-weighted force prefactor at the end.", U),
            Arg("relative_f", "float|None", None, "Relative force error normalisation.",
                status=U),
            Arg("enable_atom_ener_coeff", "bool", False, "Weight atomic energies by "
                "atom_ener_coeff.npy.", status=U),
            _pref("start_pref_gf", 0.0, "Generalized-force prefactor at the start.", U),
            _pref("limit_pref_gf", 0.0, "Generalized-force prefactor at the end.", U),
            Arg("numb_generalized_coord", "int", 0, "Generalized coordinates.", status=U),
            Arg("use_l1_all", "bool", False, "L1 loss on every term.", status=U),
            Arg("inference", "bool", False, "Loss used only for inference metrics.", status=U),
            Arg("use_huber", "bool", False, "Huber loss.", status=U),
            Arg("huber_delta", "float", 0.01, "Huber loss threshold.", status=U),
            Arg("f_use_norm", "bool", False, "Loss on the force norm.", status=U),
        )
    },
    default="ener",
    unsupported=("ener_spin", "dos", "tensor", "property"),
    doc="Loss: prefactors move from start_pref to limit_pref as the learning rate decays.",
)  # fmt: skip


def _data_args(validation: bool) -> tuple[Arg, ...]:
    args = [
        Arg("systems", "str|list[str]", REQUIRED, "A list of systems, or a directory searched "
            "for systems (or an .h5 file); relative paths are taken from the cwd."),
        Arg("batch_size", "int|str|list[int|str]", "auto", "Frames per batch: int, 'auto' "
            "(= 'auto:32') or 'auto:N' (smallest with batch_size x natoms >= N); a list gives "
            "one per system.", check=_check_batch_size),
        Arg("auto_prob", "str", "prob_sys_size", "System probabilities: prob_uniform, "
            "prob_sys_size (proportional to batches) or prob_sys_size;stt:end:weight;...",
            alias=("auto_prob_style",)),
        Arg("sys_probs", "list[float]|None", None, "System probabilities (override auto_prob).",
            alias=("sys_weights",)),
        Arg("rglob_patterns", "list[str]|None", None, "Glob patterns to find systems.",
            status=U),
    ]  # fmt: skip
    if validation:
        args.append(
            Arg(
                "numb_btch",
                "int",
                1,
                "Validation batches per display step.",
                alias=("numb_batch",),
                check=_check_positive,
            )
        )
    return tuple(args)


TRAINING = (
    Arg("training_data", "dict", REQUIRED, "Training systems.", sub=_data_args(False)),
    Arg("validation_data", "dict|None", None, "Validation systems (lcurve.out *_val columns).",
        sub=_data_args(True)),
    Arg("numb_steps", "int", REQUIRED, "Number of training steps.", alias=("stop_batch",),
        check=_check_nonneg),
    Arg("seed", "int|None", None, "Seed of the batch sampling."),
    Arg("disp_file", "str", "lcurve.out", "Learning-curve file: step, the RMSEs (`*_val` "
        "columns only with validation_data) and lr; `nan` where the batch has no labels for "
        "a term (DeePMD-kit's convention). A new run overwrites it (warning first); --restart "
        "appends."),
    Arg("disp_freq", "int", 1000, "Steps between two lines of the learning curve.",
        check=_check_positive),
    Arg("save_freq", "int", 1000, "Steps between two checkpoints.", check=_check_positive),
    Arg("save_ckpt", "str", "model.ckpt", "Checkpoint prefix: PREFIX-STEP.ckpt, and a "
        "`checkpoint` file naming the latest. Checkpoints of an earlier run with the same "
        "prefix (any, or on --restart those past its step) are removed when this run writes "
        "its first checkpoint (a warning at the start says so)."),
    Arg("max_ckpt_keep", "int", 5, "Checkpoints kept (older ones are removed).",
        check=_check_positive),
    Arg("compile", "bool|str", "auto", "deepmd_md: compile the whole training step (loss, "
        "forces, gradients) with torch Inductor. About a minute per system shape on a cold "
        "cache (cached on disk), then about 1.4x faster steps (water example). \"auto\" compiles from "
        "2000 remaining steps on. JAX always compiles (jit). tanh runs as 1 - 2/(exp(2x)+1) in the "
        "compiled step (within 4e-16; DPMD_MD_EXACT_TANH=1 keeps tanh).", check=_check_compile),
    Arg("change_bias_after_training", "bool", False, "Refit the energy bias after training.",
        status=U),
    Arg("stat_file", "str|None", None, "deepmd_md: an .npz file caching the data statistics "
        "(environment-matrix mean/std, energy bias): written after they are computed, read "
        "instead of recomputing when it exists; refused with a clear message if it was written "
        "for another model or other systems. Not DeePMD-kit's stat-file layout."),
    Arg("mixed_precision", "dict|None", None, "Mixed-precision training.", status=U),
    Arg("numb_test", "int|list|str", 1, "Frames tested during training (DeePMD-kit v1 key; "
        "validation_data is used instead).", status=IGN),
    Arg("disp_training", "bool", True, "Show training progress: the progress bar and, every "
        "disp_freq steps, a line with the RMSEs (always in the -l/--log-path file; on the "
        "console without a progress bar). false: neither, in no file; lcurve.out is still "
        "written."),
    Arg("time_training", "bool", True, "Time the training: wall time of each disp_freq block in "
        "the progress lines and the mean time per step at the end."),
    Arg("profiling", "bool", False, "Record a few steps (after the first, which compiles) "
        "with the framework profiler (torch.profiler or jax.profiler) and write a Chrome "
        "trace (chrome://tracing, Perfetto) to profiling_file."),
    Arg("profiling_file", "str", "timeline.json", "Chrome-trace JSON written by profiling."),
    Arg("enable_profiler", "bool", False, "Record a few steps (after the first) with the "
        "framework profiler into tensorboard_log_dir, for TensorBoard's profile plugin."),
    Arg("tensorboard", "bool", False, "Write TensorBoard event files to tensorboard_log_dir: "
        "train/ (loss, rmse, rmse_e, rmse_f, rmse_v when trained, lr) every tensorboard_freq "
        "steps and validation/ (the RMSEs) every disp_freq steps; needs the tensorboard "
        "package (pip install 'deepmd-md[tensorboard]')."),
    Arg("tensorboard_log_dir", "str", "log", "Folder of the TensorBoard event files (and of "
        "enable_profiler's traces)."),
    Arg("tensorboard_freq", "int", 1, "Steps between two training records in the TensorBoard "
        "event files.", check=_check_positive),
    Arg("warmup_steps", "int", 0, "Learning-rate warm-up steps.", status=U),
    Arg("warmup_start_factor", "float", 0.0, "Warm-up start factor.", status=U),
    Arg("gradient_max_norm", "float|None", None, "Clip the gradient to this global 2-norm "
        "before each Adam step (over all trainable parameters).", check=_check_positive),
    Arg("opt_type", "str", "Adam", "Optimizer.", choices=("Adam",),
        unsupported_choices=("AdamW", "LKF", "AdaMuon", "HybridMuon")),
    Arg("zero_stage", "int", 0, "ZeRO distributed optimizer stage.", status=U),
    Arg("model_prob", "dict|None", None, "Multi-task model probabilities.", status=U),
    Arg("data_dict", "dict|None", None, "Multi-task data.", status=U),
)  # fmt: skip

ROOT_ARGS = (
    Arg("model", "dict", REQUIRED, "The model.", sub=MODEL),
    Arg("learning_rate", "dict", {}, "Learning-rate schedule.", variant=LEARNING_RATE),
    Arg("loss", "dict", {}, "Loss function.", variant=LOSS),
    Arg("training", "dict", REQUIRED, "Training control.", sub=TRAINING),
    Arg("nvnmd", "dict|None", None, "NVNMD hardware model.", status=U),
)
