"""The trainer: data sets, the Anonymising AutoEncoder and its regularisers, training, evaluation."""
