"""How close is each CoLA sentence scored to its nearest training sentence? Word-set Jaccard, for the
held-out 10 % (runs/glue-holdout, make_holdout.py) against the 90 % trained on, and for dev against
the full training set. Issue 16: why Standard passes CoLA's bar on held-out data but not on dev.

    python docs/results/glue-full/cola_overlap.py   # from the repository root, after make_holdout.py
"""
import csv

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer

def read(path):  # CoLA tsv without header: source, label, orig_label, sentence
    with open(path, newline='') as f:
        return [row[3] for row in csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE)]

def nearest(train, queries):
    vec = CountVectorizer(binary=True, token_pattern=r"[A-Za-z']+", lowercase=True).fit(train + queries)
    T = vec.transform(train).astype(np.float32); Q = vec.transform(queries).astype(np.float32)
    inter = (Q @ T.T).toarray()
    tn = np.asarray(T.sum(1)).ravel(); qn = np.asarray(Q.sum(1)).ravel()
    jac = inter / (qn[:, None] + tn[None, :] - inter)
    return jac.max(1)

h_train = read('runs/glue-holdout/CoLA/train.tsv'); h_dev = read('runs/glue-holdout/CoLA/dev.tsv')
f_train = read('../shared/data/glue/CoLA/train.tsv'); f_dev = read('../shared/data/glue/CoLA/dev.tsv')
print(len(h_train), len(h_dev), len(f_train), len(f_dev))
for name, j in (('held-out vs 90% train', nearest(h_train, h_dev)), ('dev vs full train', nearest(f_train, f_dev))):
    print(f"{name}: median nearest Jaccard {np.median(j):.3f}, mean {j.mean():.3f}, "
          f">=0.8: {np.mean(j >= 0.8):.3f}, >=0.6: {np.mean(j >= 0.6):.3f}, ==1: {np.mean(j >= 0.999):.3f}")
