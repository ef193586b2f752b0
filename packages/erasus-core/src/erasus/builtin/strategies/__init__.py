"""Built-in strategies."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.strategies.retrain:Retrain",
    "erasus.builtin.strategies.finetune:Finetune",
    "erasus.builtin.strategies.gradient_ascent:GradientAscent",
    "erasus.builtin.strategies.gradient_difference:GradientDifference",
    "erasus.builtin.strategies.random_label:RandomLabel",
)
