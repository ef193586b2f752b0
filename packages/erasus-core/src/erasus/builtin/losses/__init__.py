"""The built-in losses."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.losses.retain_anchor:RetainAnchor",
    "erasus.builtin.losses.contrastive:ContrastiveUnlearning",
    "erasus.builtin.losses.kl_divergence:KLDivergence",
    "erasus.builtin.losses.mmd:MMD",
)
