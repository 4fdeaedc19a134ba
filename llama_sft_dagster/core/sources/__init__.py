"""Raw-source readers: Bitext (CSV/Parquet/hub), MultiWOZ 2.2 (published layout/archive), their content
versions and input errors."""
