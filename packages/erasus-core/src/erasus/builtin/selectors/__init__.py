"""Built-in selectors."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.selectors.full:FullSelector",
    "erasus.builtin.selectors.random:RandomSelector",
    "erasus.builtin.selectors.influence:Influence",
    "erasus.builtin.selectors.tracin:TracIn",
    "erasus.builtin.selectors.gradient_norm:GradientNorm",
    "erasus.builtin.selectors.grad_match:GradMatch",
    "erasus.builtin.selectors.el2n:EL2N",
    "erasus.builtin.selectors.representer:Representer",
    "erasus.builtin.selectors.kcenter:KCenter",
    "erasus.builtin.selectors.herding:Herding",
    "erasus.builtin.selectors.craig:Craig",
    "erasus.builtin.selectors.glister:Glister",
    "erasus.builtin.selectors.submodular:Submodular",
    "erasus.builtin.selectors.kmeans_coreset:KMeansCoreset",
    "erasus.builtin.selectors.forgetting_events:ForgettingEventsSelector",
    "erasus.builtin.selectors.data_shapley:DataShapleySelector",
    "erasus.builtin.selectors.valuation_network:ValuationNetworkSelector",
    "erasus.builtin.selectors.upcore:UpcoreSelector",
    "erasus.builtin.selectors.voting:VotingSelector",
    "erasus.builtin.selectors.auto:AutoSelector",
)
