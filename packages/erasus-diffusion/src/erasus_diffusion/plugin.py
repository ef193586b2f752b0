"""The ``diffusion`` plugin of Erasus (entry point ``diffusion = "erasus_diffusion.plugin"``).

It will register model adapters for Stable Diffusion pipelines and class-conditional
DDPMs, concept-erasure strategies (ESD, UCE, concept ablation...), FID, CLIP-score and
erasure-rate metrics and prompt dataset providers through the ``erasus_register_*``
hooks of :mod:`erasus.hookspecs`. It implements no hook yet, so it registers no
component: it loads, and ``erasus list-plugins`` shows it, with nothing under it.
"""
