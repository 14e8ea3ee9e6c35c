{{/* Generated from exporter/cilium_node_exporter/config.py by `python -m cilium_node_exporter.config_doc`; do not edit. */}}
{{/* Exporter arguments from chart values: each flag is passed only when its value is set, so the
     exporter's own default (defined once, in FLAGS) applies otherwise. */}}
{{- define "cne.flagArgs" -}}
{{- with $.Values.log.level }}
- --log-level={{ . }}
{{- end }}
{{- with $.Values.log.format }}
- --log-format={{ . }}
{{- end }}
{{- with $.Values.hubble.address }}
- --hubble-address={{ . }}
{{- end }}
{{- with $.Values.extraLabels }}
- --extra-labels={{ join "," . }}
{{- end }}
{{- with $.Values.labelCap }}
- --label-cap={{ . }}
{{- end }}
{{- with $.Values.kubelet.address }}
- --kubelet-address={{ . }}
{{- end }}
{{- with $.Values.kubelet.caFile }}
- --kubelet-ca={{ . }}
{{- end }}
{{- if not (kindIs "invalid" $.Values.kubelet.insecureSkipVerify) }}
- --kubelet-insecure-skip-verify={{ $.Values.kubelet.insecureSkipVerify }}
{{- end }}
{{- with $.Values.cilium.namespace }}
- --cilium-namespace={{ . }}
{{- end }}
{{- with $.Values.cilium.podSelector }}
- --cilium-pod-selector={{ . }}
{{- end }}
{{- with $.Values.cilium.container }}
- --cilium-container={{ . }}
{{- end }}
{{- with $.Values.agentMetrics.address }}
- --agent-metrics-address={{ . }}
{{- end }}
{{- if not (kindIs "invalid" $.Values.envoy.enabled) }}
- --envoy={{ $.Values.envoy.enabled }}
{{- end }}
{{- with $.Values.envoy.namespace }}
- --envoy-namespace={{ . }}
{{- end }}
{{- with $.Values.envoy.podSelector }}
- --envoy-pod-selector={{ . }}
{{- end }}
{{- with $.Values.envoy.container }}
- --envoy-container={{ . }}
{{- end }}
{{- with $.Values.settings.from }}
- --settings-from={{ join "," . }}
{{- end }}
{{- with $.Values.settings.configMapName }}
- --settings-configmap={{ . }}
{{- end }}
{{- with $.Values.memoryEnvelope }}
- --memory-envelope={{ . }}
{{- end }}
{{- if not (kindIs "invalid" $.Values.envelopeFromNodeAnnotation) }}
- --envelope-from-node-annotation={{ $.Values.envelopeFromNodeAnnotation }}
{{- end }}
{{- with $.Values.memoryEnvelopeMode }}
- --memory-envelope-mode={{ . }}
{{- end }}
{{- end }}
{{- define "cne.flagDefault.log-level" -}}info{{- end }}
{{- define "cne.flagDefault.log-format" -}}text{{- end }}
{{- define "cne.flagDefault.hubble-address" -}}unix:///var/run/cilium/hubble.sock{{- end }}
{{- define "cne.flagDefault.extra-labels" -}}{{- end }}
{{- define "cne.flagDefault.label-cap" -}}50{{- end }}
{{- define "cne.flagDefault.kubelet-address" -}}https://$NODE_IP:10250{{- end }}
{{- define "cne.flagDefault.kubelet-ca" -}}/var/run/secrets/kubernetes.io/serviceaccount/ca.crt{{- end }}
{{- define "cne.flagDefault.kubelet-insecure-skip-verify" -}}false{{- end }}
{{- define "cne.flagDefault.cilium-namespace" -}}kube-system{{- end }}
{{- define "cne.flagDefault.cilium-pod-selector" -}}k8s-app=cilium{{- end }}
{{- define "cne.flagDefault.cilium-container" -}}cilium-agent{{- end }}
{{- define "cne.flagDefault.agent-metrics-address" -}}http://$NODE_IP:9962/metrics{{- end }}
{{- define "cne.flagDefault.envoy" -}}true{{- end }}
{{- define "cne.flagDefault.envoy-namespace" -}}{{- end }}
{{- define "cne.flagDefault.envoy-pod-selector" -}}k8s-app=cilium-envoy{{- end }}
{{- define "cne.flagDefault.envoy-container" -}}cilium-envoy{{- end }}
{{- define "cne.flagDefault.settings-from" -}}agent-api,configmap{{- end }}
{{- define "cne.flagDefault.settings-configmap" -}}cilium-config{{- end }}
{{- define "cne.flagDefault.memory-envelope" -}}200Mi-500Mi{{- end }}
{{- define "cne.flagDefault.envelope-from-node-annotation" -}}false{{- end }}
{{- define "cne.flagDefault.memory-envelope-mode" -}}static{{- end }}
