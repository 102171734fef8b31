"""DeePMD-kit 3.2 PyTorch state dicts -> deepmd_md ModelData, one module per descriptor family
(used by benchmarks/dp_equivalence.py). Each module: `to_model_data(state: dict[str, ndarray],
model_section: dict) -> ModelData`, where `state` maps DeePMD-kit's tensor names (with the
`model.Default.atomic_model.` prefix removed) to arrays and `model_section` is our normalised
`model` section of the same input."""
