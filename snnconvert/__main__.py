"""``python -m snnconvert ...`` (and ``torchrun -m snnconvert finetune ...``) runs the CLI."""

from snnconvert.cli.app import main

if __name__ == "__main__":
    main()
