"""The Quick Start of the README, unchanged: two runs, then the project loaded and searched.

Run it from an empty folder: it writes ./checkpoints.  Without wandb credentials it logs to wandb offline
(one warning says so); with WANDB_MODE=disabled it does not touch wandb at all.
"""

import os
from ml_manager import MLRun, MLProject

# --- Configuration ---
# !! Change this to your wandb entity !!
WANDB_ENTITY = "your_wandb_entity"
WANDB_PROJECT = "my-demo-project"
BASE_CHECKPOINT_DIR = "./checkpoints"

# --- 1. Run Experiment 1 (CNN) ---
print("--- Running Experiment 1: CNN ---")
config1 = {
    "learning_rate": 0.001,
    "batch_size": 32,
    "model": {"name": "CNN", "layers": 5}
}

# This calls wandb.init() and creates the local dir
run1 = MLRun.create(
    config=config1,
    base_dir=BASE_CHECKPOINT_DIR,
    project_name=WANDB_PROJECT,
    entity=WANDB_ENTITY
)

# ... (your model training loop) ...
print(f"Training CNN... (Run ID: {run1.run_id})")

# Log final metrics. This saves to metrics.toml and calls wandb.log()
final_metrics1 = {"accuracy": 0.92, "f1_score": 0.91, "epoch": 10}
run1.add_metrics(final_metrics1)

# This calls wandb.finish()
run1.finish()
print(f"Find this run at: {run1.get_wandb_url()}")


# --- 2. Run Experiment 2 (BERT) ---
print("\n--- Running Experiment 2: BERT ---")
config2 = {
    "learning_rate": 5e-5,
    "batch_size": 16,
    "model": {"name": "BERT", "layers": 12}
}

run2 = MLRun.create(
    config=config2,
    base_dir=BASE_CHECKPOINT_DIR,
    project_name=WANDB_PROJECT,
    entity=WANDB_ENTITY
)

# ... (your model training loop) ...
print(f"Training BERT... (Run ID: {run2.run_id})")

final_metrics2 = {"accuracy": 0.96, "f1_score": 0.95, "epoch": 5}
run2.add_metrics(final_metrics2)
run2.finish()
print(f"Find this run at: {run2.get_wandb_url()}")


# --- 3. Analyze All Experiments ---
print("\n--- Analyzing Project ---")

# This scans ./checkpoints/{project_name}/{run_id} and loads all config.toml/metrics.toml files
project = MLProject(base_dir=BASE_CHECKPOINT_DIR)

print("\n[Full Experiment DataFrame]")
print(project.df.to_markdown(index=False))

# Search the DataFrame using pandas query syntax
# Note: Use backticks (`) for nested keys like 'model.name'
print("\n[Searching for 'accuracy > 0.95']")
best_runs_df = project.search(query_string="accuracy > 0.95")

print(best_runs_df[['run_id', 'model.name', 'accuracy', 'f1_score']].to_markdown(index=False))

# Load a specific run object from the search result
if not best_runs_df.empty:
    best_run_id = best_runs_df.iloc[0]["run_id"]
    print(f"\n[Loading best run: {best_run_id}]")
    
    best_run: MLRun = project.get_run(best_run_id)
    print(f"Config: {best_run.config}")
    print(f"Metrics: {best_run.metrics}")
