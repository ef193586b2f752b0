"""The ``vlm`` plugin of Erasus (entry point ``vlm = "erasus_vlm.plugin"``).

It will register model adapters for CLIP, BLIP and LLaVA, cross-modal unlearning
strategies, zero-shot and retrieval metrics and image-caption dataset providers through
the ``erasus_register_*`` hooks of :mod:`erasus.hookspecs`. It implements no hook yet,
so it registers no component: it loads, and ``erasus list-plugins`` shows it, with
nothing under it.
"""
