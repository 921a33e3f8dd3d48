{{/* Names and labels shared by every object of the chart. */}}

{{- define "bert-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bert-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bert-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bert-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "bert-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bert-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bert-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "bert-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "bert-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The webhook's serving certificate: Secret name and the DNS name the API server calls. */}}
{{- define "bert-operator.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "bert-operator.fullname" .) -}}
{{- end -}}

{{- define "bert-operator.webhookHost" -}}
{{- printf "%s.%s.svc" (include "bert-operator.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* Rules for the namespaced objects the operator reads and writes (ClusterRole or per-namespace Role). */}}
{{- define "bert-operator.jobRules" -}}
- apiGroups: ["bertoperator.io"]
  resources: ["berttrainingjobs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["bertoperator.io"]
  resources: ["berttrainingjobs/status"]
  verbs: ["patch"]
- apiGroups: ["kubeflow.org"]
  resources: ["mpijobs"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list", "patch"]
- apiGroups: ["serving.kserve.io"]
  resources: ["inferenceservices"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get"]
{{- end -}}
