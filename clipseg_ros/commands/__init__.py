"""The console commands (clipseg-segment, -export, -quant-check, -train, -eval): argument parsing and
printing, calling the engine and training packages."""
