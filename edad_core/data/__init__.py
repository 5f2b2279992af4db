"""Data files shipped with the package.

paper_tables.csv: the figures of Tables 1-4 of Seo & Hwang (2023), "EDAD: Efficient Domain Adaptive Distillation
by Integrating Domain Adaptation and Knowledge Distillation", transcribed from the paper's tables (F1 per dataset
and Average with their 95% intervals in percent, parameters in millions, time cost in hours on 4 RTX 3090s; the
Average cells are the mean of the three dataset cells, their +- the mean of the three intervals). Table 4 labels
its rows by schedule name (docs/design.md decision 1).
"""
