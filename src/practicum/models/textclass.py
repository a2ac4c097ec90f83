"""Sentence classifiers over word embeddings: TextCNN (Kim 2014) and a bidirectional LSTM (d2l 16.2).

    ids (B, T) -> embedding (B, T, E) --TextCNN--> conv1d k=3,4,5 x C, ReLU, max over time -> (B, 3C)
                                      --BiLSTM --> last states of both directions, top layer -> (B, 2H)
               -> dropout -> linear -> logits (B, classes)

``embedding`` is an ordinary ``nn.Embedding`` whose rows start U[-0.25, 0.25] (Kim's CNN-rand:
about the spread of pre-trained vectors; torch's N(0, 1) default is four times wider and learns
slowly with Adam's small steps); the task may overwrite rows from a word2vec run.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from practicum.errors import UsageError


def kim_embedding(vocab_size: int, embed: int, pad: int) -> nn.Embedding:
    emb = nn.Embedding(vocab_size, embed, padding_idx=pad)
    with torch.no_grad():
        emb.weight.uniform_(-0.25, 0.25)
        emb.weight[pad] = 0
    return emb


class TextCNN(nn.Module):
    def __init__(self, vocab_size: int, embed: int, kernel_sizes=(3, 4, 5), channels: int = 100,
                 dropout: float = 0.5, classes: int = 2, pad: int = 0):
        super().__init__()
        self.embedding = kim_embedding(vocab_size, embed, pad)
        self.convs = nn.ModuleList(nn.Conv1d(embed, channels, k) for k in kernel_sizes)
        self.min_len = max(kernel_sizes)
        self.pad = pad
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(channels * len(kernel_sizes), classes)

    def forward(self, X: Tensor, lengths: Tensor) -> Tensor:
        if X.shape[1] < self.min_len:  # every filter needs at least one full window
            X = nn.functional.pad(X, (0, self.min_len - X.shape[1]), value=self.pad)
        E = self.embedding(X).transpose(1, 2)  # (B, E, T): Conv1d wants channels first
        # max over time of each feature map: the strongest match of each filter anywhere
        feats = [torch.relu(conv(E)).amax(dim=2) for conv in self.convs]  # each (B, C)
        return self.out(self.dropout(torch.cat(feats, 1)))  # (B, classes)


class BiLSTM(nn.Module):
    def __init__(self, vocab_size: int, embed: int, hidden: int = 100, layers: int = 2, dropout: float = 0.5,
                 classes: int = 2, pad: int = 0):
        super().__init__()
        self.embedding = kim_embedding(vocab_size, embed, pad)
        self.rnn = nn.LSTM(embed, hidden, layers, batch_first=True, bidirectional=True,
                           dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, classes)

    def forward(self, X: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(self.embedding(X), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.rnn(packed)  # h (layers * 2, B, H): forward after the last real token,
        both = torch.cat([h[-2], h[-1]], 1)  # backward after the first -- padding never read
        return self.out(self.dropout(both))  # (B, classes)


def build_classifier(name: str, vocab_size: int, embed: int, **kwargs) -> nn.Module:
    if name == "textcnn":
        return TextCNN(vocab_size, embed, **kwargs)
    if name == "bilstm":
        return BiLSTM(vocab_size, embed, **kwargs)
    raise UsageError(f"unknown text classifier '{name}': use textcnn or bilstm")
