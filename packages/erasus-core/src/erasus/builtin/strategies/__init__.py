"""Built-in strategies."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.strategies.retrain:Retrain",
    "erasus.builtin.strategies.finetune:Finetune",
    "erasus.builtin.strategies.gradient_ascent:GradientAscent",
    "erasus.builtin.strategies.gradient_difference:GradientDifference",
    "erasus.builtin.strategies.random_label:RandomLabel",
    "erasus.builtin.strategies.negative_gradient:NegativeGradient",
    "erasus.builtin.strategies.npo:NPO",
    "erasus.builtin.strategies.simnpo:SimNPO",
    "erasus.builtin.strategies.wga:WGA",
    "erasus.builtin.strategies.scrub:SCRUB",
    "erasus.builtin.strategies.bad_teacher:BadTeacher",
    "erasus.builtin.strategies.amnesiac:Amnesiac",
    "erasus.builtin.strategies.lora:LoRA",
    "erasus.builtin.strategies.salun:SalUn",
    "erasus.builtin.strategies.l1_sparse:L1Sparse",
    "erasus.builtin.strategies.sparse_aware:SparseAware",
    "erasus.builtin.strategies.mask_based:MaskBased",
    "erasus.builtin.strategies.neuron_pruning:NeuronPruning",
    "erasus.builtin.strategies.fisher_forgetting:FisherForgetting",
    "erasus.builtin.strategies.influence_update:InfluenceUpdate",
    "erasus.builtin.strategies.ssd:SSD",
    "erasus.builtin.strategies.sisa:Sisa",
    "erasus.builtin.strategies.certified_training:CertifiedTraining",
    "erasus.builtin.strategies.certified_removal:CertifiedRemoval",
)
