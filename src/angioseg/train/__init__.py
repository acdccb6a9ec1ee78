"""Training: checkpoints, the Lightning fine-tuning module and the trainer factory."""
