"""The one "not in the documents" sentence, and every phrasing of it that a model writes.

One sentence across the prompt, the training data and the app: :data:`NOT_FOUND` (and its
translations in :data:`NOT_FOUND_BY_LANGUAGE`, shown when the question was asked in that
language). Models paraphrase it ("The sources do not contain the answer.", "No se menciona en
los documentos."), so :func:`says_not_found` recognises the common phrasings in the languages of
:mod:`rag_app.language`; an answer whose first sentence is one of them is an abstention.
"""

from __future__ import annotations

import re

NOT_FOUND = "I could not find the answer in the documents."

NOT_FOUND_BY_LANGUAGE: dict[str, str] = {
    "en": NOT_FOUND,
    "es": "No encontré la respuesta en los documentos.",
    "fr": "Je n'ai pas trouvé la réponse dans les documents.",
    "de": "Ich habe die Antwort in den Dokumenten nicht gefunden.",
    "it": "Non ho trovato la risposta nei documenti.",
    "pt": "Não encontrei a resposta nos documentos.",
    "nl": "Ik heb het antwoord niet in de documenten gevonden.",
    "pl": "Nie znalazłem odpowiedzi w dokumentach.",
    "sv": "Jag hittade inte svaret i dokumenten.",
    "ru": "Я не нашёл ответа в документах.",
    "zh": "我在文档中没有找到答案。",
    "ja": "文書の中に答えが見つかりませんでした。",
}

_SOURCES = r"(?:sources?|documents?|context|passages?|texts?|provided\s+information|information\s+provided)"
_GIVEN = r"(?:mentioned|stated|specified|provided|covered|found|available|given|included|addressed)"
_PATTERNS = [
    # English
    r"\b(?:could\s*n[o']t|can\s*n[o']t|cannot|unable\s+to|did\s*n[o']t|do\s*n[o']t|does\s*n[o']t|was\s+not\s+able\s+to)\s+"
    r"(?:find|locate|determine|answer|tell|see|know|identify)\b",
    rf"\b{_SOURCES}\s+(?:do|does|did)\s*(?:n[o']t|not)\s+"
    r"(?:contain|mention|provide|include|say|state|specify|give|answer|have|discuss|cover|address|offer)\b",
    r"\bno\s+(?:information|mention|answer|details?|data|evidence|indication)\b",
    rf"\bnot\s+{_GIVEN}\s+(?:in|by|within)\s+(?:the\s+|any\s+of\s+the\s+)?(?:provided\s+|given\s+)?{_SOURCES}",
    rf"^(?:unfortunately,?\s+)?(?:it|this|that|the\s+answer|this\s+information|that\s+information)"
    rf"\s+(?:is|was)\s+not\s+{_GIVEN}\b",
    rf"\bnot\s+in\s+the\s+{_SOURCES}\b",
    r"\b(?:i\s+(?:do\s*n[o']t|don't)\s+know|i'?m\s+not\s+sure)\b",
    r"\b(?:cannot|can't|can\s+not)\s+be\s+(?:determined|found|answered)\b",
    r"\b(?:not\s+enough|insufficient)\s+information\b",
    r"\bthere\s+is\s+no\s+(?:information|answer|mention|data)\b",
    # Spanish, Portuguese, Italian, French, German, Dutch
    r"\bno\s+(?:se\s+)?(?:encontr[éeó]|encuentr|menciona|proporciona|contiene|especifica|dice|indica|hay\s+informaci)",
    r"\bn[ãa]o\s+(?:encontrei|foi\s+encontrad|menciona|cont[ée]m|h[áa]\s+informa)",
    r"\bnon\s+(?:ho\s+trovato|è\s+(?:menzionat|indicat|specificat)|contiene|menziona|c'è)",
    r"\b(?:je\s+n'ai\s+pas\s+trouvé|ne\s+(?:mentionne|contient|précise|fournit|dit)|aucune\s+information|pas\s+mentionné)",
    r"\b(?:nicht\s+(?:gefunden|erwähnt|enthalten|angegeben)|keine\s+(?:informationen|angaben|antwort))",
    r"\b(?:niet\s+(?:gevonden|vermeld|genoemd)|geen\s+informatie)",
]
_NOT_FOUND = re.compile("|".join(_PATTERNS), re.IGNORECASE)
_FIRST_SENTENCE = re.compile(r"^.*?(?:[.!?。](?=\s|$)|\n|$)", re.DOTALL)


def says_not_found(sentence: str) -> bool:
    """True when ``sentence`` says the sources lack the answer (in any phrasing we know)."""
    squashed = " ".join(sentence.split())
    if any(squashed.startswith(s.rstrip(".。")) for s in NOT_FOUND_BY_LANGUAGE.values()):
        return True
    return _NOT_FOUND.search(squashed) is not None


def is_not_found(text: str) -> bool:
    """True when an answer is an abstention: its first sentence says the documents lack the answer."""
    match = _FIRST_SENTENCE.match(text.strip())
    first = match.group() if match else text
    return says_not_found(first)


def not_found_sentence(language: str) -> str:
    """The abstention sentence in ``language`` (an ISO code); English when we have no translation."""
    return NOT_FOUND_BY_LANGUAGE.get(language, NOT_FOUND)


REASONS: dict[str, dict[str, str]] = {
    "no_close_passage": {
        "en": "None of the documents is close enough to the question.",
        "es": "Ningún documento se acerca lo suficiente a la pregunta.",
        "fr": "Aucun document n'est assez proche de la question.",
        "de": "Keines der Dokumente passt gut genug zur Frage.",
        "it": "Nessun documento è abbastanza vicino alla domanda.",
        "pt": "Nenhum documento está próximo o suficiente da pergunta.",
    },
    "model_found_none": {
        "en": "The documents do not seem to contain the answer.",
        "es": "Los documentos no parecen contener la respuesta.",
        "fr": "Les documents ne semblent pas contenir la réponse.",
        "de": "Die Dokumente scheinen die Antwort nicht zu enthalten.",
        "it": "I documenti non sembrano contenere la risposta.",
        "pt": "Os documentos não parecem conter a resposta.",
    },
    "empty_answer": {
        "en": "No answer could be written from the documents.",
        "es": "No se pudo escribir una respuesta a partir de los documentos.",
        "fr": "Aucune réponse n'a pu être rédigée à partir des documents.",
        "de": "Aus den Dokumenten ließ sich keine Antwort schreiben.",
        "it": "Non è stato possibile scrivere una risposta dai documenti.",
        "pt": "Não foi possível escrever uma resposta a partir dos documentos.",
    },
    "unsupported": {
        "en": "The answer that was drafted is not supported by the documents, so it is not shown.",
        "es": "La respuesta redactada no está respaldada por los documentos, así que no se muestra.",
        "fr": "La réponse rédigée n'est pas étayée par les documents ; elle n'est donc pas affichée.",
        "de": "Die entworfene Antwort wird von den Dokumenten nicht gestützt und daher nicht gezeigt.",
        "it": "La risposta redatta non è supportata dai documenti, quindi non viene mostrata.",
        "pt": "A resposta redigida não é sustentada pelos documentos, por isso não é mostrada.",
    },
    "withdrawn": {
        "en": "The text above was withdrawn: the documents do not support it.",
        "es": "El texto anterior se retiró: los documentos no lo respaldan.",
        "fr": "Le texte ci-dessus a été retiré : les documents ne l'étayent pas.",
        "de": "Der obige Text wurde zurückgezogen: Die Dokumente stützen ihn nicht.",
        "it": "Il testo sopra è stato ritirato: i documenti non lo supportano.",
        "pt": "O texto acima foi retirado: os documentos não o sustentam.",
    },
    "unverified": {
        "en": "Not supported by the documents: check it against the sources.",
        "es": "No respaldado por los documentos: compruébelo en las fuentes.",
        "fr": "Non étayé par les documents : vérifiez-le dans les sources.",
        "de": "Nicht durch die Dokumente gestützt: bitte an den Quellen prüfen.",
        "it": "Non supportato dai documenti: verificalo nelle fonti.",
        "pt": "Não sustentado pelos documentos: verifique nas fontes.",
    },
}
"""Why an answer was not given, in the user's language (English where a translation is missing)."""


def reason(code: str, language: str) -> str:
    """The user-facing sentence for ``code`` in ``language``."""
    texts = REASONS[code]
    return texts.get(language, texts["en"])
