"""Fine-tuning LUKE on the paper's five tasks: `run_finetune.py` and the task modules."""
