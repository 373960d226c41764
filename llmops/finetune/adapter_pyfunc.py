"""The models-from-code file of a packaged adapter: MLflow runs it when the model loads.

Never imported by llmops itself; ``packaging.log_adapter`` logs it.
"""

from mlflow.models import set_model

from llmops.finetune.packaging import AdapterModel

set_model(AdapterModel())
