"""Fine-tuning a pretrained model: classifiers the ULMFiT way (classifier.py for the GPT, lstm_classifier.py
for the LSTM) and instruction tuning (instruction_data.py: the template and batches; instruction_tuning.py:
the training, and checkpoints that `python -m gpt.chat` opens)."""
from gpt.finetune.classifier import Classifier, FitResult, GPTClassifier, fit, slanted_triangular
from gpt.finetune.instruction_data import InstructVocab, format_prompt
from gpt.finetune.instruction_tuning import fine_tune, load_instruct_model, save_instruct_checkpoint
from gpt.finetune.lstm_classifier import LSTMClassifier

__all__ = ["Classifier", "FitResult", "GPTClassifier", "LSTMClassifier", "fit", "slanted_triangular",
           "InstructVocab", "format_prompt", "fine_tune", "load_instruct_model", "save_instruct_checkpoint"]
