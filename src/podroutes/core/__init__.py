"""The pure vocabulary: model, plan, diff, ip parsers and renderers, errors. No I/O."""
