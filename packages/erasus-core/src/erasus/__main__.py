"""``python -m erasus`` runs the CLI (what ``torchrun --nproc_per_node N -m erasus`` needs)."""

if __name__ == "__main__":
    from erasus.cli import main

    main()
