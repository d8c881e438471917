"""What the benchmarks share: the machine a figure was measured on, a served run, a recipe with
--set changes, large image folders, the memory of a process tree. Not benchmarks themselves."""
