"""llama-sft-dagster: customer-support conversations -> fine-tuned, merged Llama model, as Dagster assets.

Run the demo graph offline:  make demo
Open the UI:                 make ui
"""
